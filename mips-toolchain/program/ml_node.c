/* ml_node: executes node k of a committed model and decides a claim about it
 * (docs/ml-spec.md §7.1). This is the program of the verification game's
 * phase 2.
 *
 * Local values: 1 the model commitment (32 bytes), 2 the node index k (u32
 * little-endian), 3 S_{k−1} (32 bytes, the agreed state before node k),
 * 4 the claimed S_k (32 bytes).
 *
 * It reads node k's record from the manifest and its inputs' descs, checks
 * the node and its step bound (exit 3 above 2^31, before any of its work),
 * reads the keys of its inputs out of S_{k−1}'s preimage (the key of value j
 * is its part 32·j) and their bytes by key, streams the weights, and computes
 * the output and its chunk-Merkle key in the VM. It prints "key 0x<64 hex>"
 * (the output's key), computes S_k, the chunk-Merkle key of S_{k−1}'s k + 1
 * keys followed by the new one, from the O(log k) nodes of S_{k−1}'s tree on
 * the new key's path (ml_next_state), and exits 0 if the claim equals it, 1
 * if not, 3 if anything it read is malformed (2 comes from the oracle
 * runtime). */
#include "chunk_merkle.h"
#include "ml.h"
#include "rt.h"

int main(void)
{
    uint8_t commitment[ML_KEY_SIZE], prev[ML_KEY_SIZE], claim[ML_KEY_SIZE];
    uint32_t k;
    ml_local(1, commitment, ML_KEY_SIZE);
    ml_local(2, &k, 4);
    ml_local(3, prev, ML_KEY_SIZE);
    ml_local(4, claim, ML_KEY_SIZE);

    struct ml_manifest m;
    ml_open_manifest(&m, commitment);
    if (k >= m.header.node_count)
        ml_malformed("node index k is not below the node count");
    struct ml_node node;
    ml_read_node(&m, k, &node);

    struct ml_src state;
    ml_src_key(&state, prev);
    if (state.size != ML_KEY_SIZE * (k + 1))
        ml_malformed("S_{k-1}'s preimage is not 32·(k + 1) bytes");

    struct ml_desc descs[2];
    const struct ml_desc *ins[2] = { &descs[0], &descs[1] };
    for (uint32_t j = 0; j < node.n_inputs; j++) {
        if (node.input[j] > k)
            ml_malformed("an input that is not computed before the node");
        ml_value_desc(&m, node.input[j], &descs[j]);
    }
    /* The op's rule and the step bound (ml-spec §9) before any of the node's
     * work: a node above the cap exits 3 in a few thousand steps. */
    struct ml_param_sizes sizes;
    ml_check_node(k, &node, ins, &sizes);
    ml_check_node_cost(k, &node, ins);

    const uint8_t *in[2] = { 0, 0 };
    uint8_t key[ML_KEY_SIZE];
    for (uint32_t j = 0; j < node.n_inputs; j++) {
        ml_src_read(&state, ML_KEY_SIZE * node.input[j], key, ML_KEY_SIZE);
        in[j] = ml_read_value(key, &descs[j]);
    }

    uint32_t out_bytes = ml_nbytes(&node.out);
    uint8_t *out = ml_alloc(out_bytes);
    ml_exec_node(k, &node, ins, in, out);
    uint8_t out_key[ML_KEY_SIZE];
    chunk_merkle_key_of(out, out_bytes, out_key);
    ml_print_key(out_key);

    uint8_t computed[ML_KEY_SIZE];
    ml_next_state(prev, k, out_key, computed);
    return memcmp(computed, claim, ML_KEY_SIZE) == 0 ? ML_EXIT_VALID : ML_EXIT_INVALID;
}
