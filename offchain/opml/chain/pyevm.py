"""py-evm settings for ape's embedded test provider."""

import eth.vm.forks.shanghai.computation as shanghai_computation
import eth.vm.forks.spurious_dragon.computation as spurious_dragon_computation

# Large enough for any contract, small enough to stay an int the EVM code can compare.
UNLIMITED_CODE_SIZE = 2**32


def lift_code_size_limit() -> None:
    """Lift EIP-170 (24 KiB runtime code) and EIP-3860 (48 KiB init code) in py-evm.

    anvil gets the same with `--disable-code-size-limit` (tools/anvil-wrapper.sh), so both local
    nodes accept the same contracts. py-evm reads these limits as module globals at call time, which
    is why rebinding them here takes effect for every fork that inherits the checks.
    """
    spurious_dragon_computation.EIP170_CODE_SIZE_LIMIT = UNLIMITED_CODE_SIZE
    shanghai_computation.MAX_INITCODE_SIZE = UNLIMITED_CODE_SIZE
