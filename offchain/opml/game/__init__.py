"""The verification game off-chain (docs/protocol.md): traces of both phases, the pure solver that
picks a party's next move, and the agents that play it on any ape network.

- :mod:`opml.game.traces`: what a party claims at each bisection position (graph states, VM steps).
- :mod:`opml.game.lies`: traces of a server told to lie, for demos and tests.
- :mod:`opml.game.solver`: the next move from a dispute as the chain shows it and a party's traces.
- :mod:`opml.game.agents`: server and challenger agents over the ``OpmlGame`` contract.
"""
