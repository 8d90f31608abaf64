/* ml_model: runs a whole committed model and decides a claim about the run
 * (docs/ml-spec.md §7.2): the single-phase mode of the verification game.
 *
 * Local values: 1 the model commitment, 2 the input key key(v_0), 3 the
 * claimed S_{N−1} (32 bytes each).
 *
 * It first checks every node's record and step bound and the model's
 * (ml-spec §9; exit 3 above a cap, before reading the input), then runs every
 * node in order as ml_node does, keeping every value in its heap. It prints
 * "key 0x<64 hex>" for each node's output, and exits 0 if the claim equals
 * the computed S_{N−1} (the chunk-Merkle key of the N + 1 value keys), 1 if
 * not, 3 if anything it read is malformed. */
#include "chunk_merkle.h"
#include "ml.h"
#include "rt.h"

int main(void)
{
    uint8_t commitment[ML_KEY_SIZE], input_key[ML_KEY_SIZE], claim[ML_KEY_SIZE];
    ml_local(1, commitment, ML_KEY_SIZE);
    ml_local(2, input_key, ML_KEY_SIZE);
    ml_local(3, claim, ML_KEY_SIZE);

    struct ml_manifest m;
    ml_open_manifest(&m, commitment);
    uint32_t n_values = m.header.node_count + 1;
    struct ml_desc *descs = ml_alloc(n_values * sizeof *descs);
    uint8_t **values = ml_alloc(n_values * sizeof *values);

    /* Every node's rule and step bound, and the model's (ml-spec §9), before
     * any work: a model above a cap exits 3 without reading its input. */
    descs[0] = m.header.input;
    uint64_t bound = ml_model_fixed_bound(&m.header);
    for (uint32_t k = 0; k < m.header.node_count; k++) {
        struct ml_node node;
        ml_read_node(&m, k, &node);
        const struct ml_desc *ins[2] = { 0, 0 };
        for (uint32_t j = 0; j < node.n_inputs; j++) {
            if (node.input[j] > k)
                ml_malformed("an input that is not computed before the node");
            ins[j] = &descs[node.input[j]];
        }
        struct ml_param_sizes sizes;
        ml_check_node(k, &node, ins, &sizes);
        ml_check_node_cost(k, &node, ins);
        bound += ML_STEPS_MODEL_NODE + ml_node_work(&node, ins);
        if (bound > ML_MAX_MODEL_STEPS)
            ml_malformed("a model whose step bound is above 2^44: split the model");
        descs[k + 1] = node.out;
    }

    struct chunk_merkle state;
    chunk_merkle_init(&state);
    values[0] = ml_read_value(input_key, &descs[0]);
    chunk_merkle_update(&state, input_key, ML_KEY_SIZE);

    for (uint32_t k = 0; k < m.header.node_count; k++) {
        struct ml_node node;
        ml_read_node(&m, k, &node);
        const struct ml_desc *ins[2] = { 0, 0 };
        const uint8_t *in[2] = { 0, 0 };
        for (uint32_t j = 0; j < node.n_inputs; j++) {
            ins[j] = &descs[node.input[j]];
            in[j] = values[node.input[j]];
        }
        uint32_t out_bytes = ml_nbytes(&node.out);
        values[k + 1] = ml_alloc(out_bytes);
        ml_exec_node(k, &node, ins, in, values[k + 1]);
        uint8_t key[ML_KEY_SIZE];
        chunk_merkle_key_of(values[k + 1], out_bytes, key);
        ml_print_key(key);
        chunk_merkle_update(&state, key, ML_KEY_SIZE);
    }
    uint8_t computed[ML_KEY_SIZE];
    chunk_merkle_key(&state, computed);
    return memcmp(computed, claim, ML_KEY_SIZE) == 0 ? ML_EXIT_VALID : ML_EXIT_INVALID;
}
