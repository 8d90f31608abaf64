/* The cost bound of docs/ml-spec.md §9: an upper bound on the VM steps of the
 * node and whole-model programs, from the manifest alone. It mirrors
 * opml.ml.cost integer for integer (uint64_t: every term of a checked node is
 * far below 2^64), so a node the Python reader rejects for its cost makes the
 * programs exit 3 before its work, and one it accepts never does. */
#include "ml.h"

/* max(1, n + 2·d) keccak permutations for the chunk-Merkle key of `nbytes`
 * bytes: n = ⌈nbytes/32⌉ chunks, d = ⌈log2 n⌉. */
static uint64_t keccak_bound(uint64_t nbytes)
{
    uint64_t n = (nbytes + 31) / 32;
    uint64_t d = 0;
    while (((uint64_t)1 << d) < n)
        d++;
    return n + 2 * d > 1 ? n + 2 * d : 1;
}

uint64_t ml_hash_steps(uint64_t nbytes)
{
    return ML_STEPS_KECCAK * keccak_bound(nbytes) + ML_STEPS_HASH_BYTE * nbytes;
}

/* Bytes of one row of k weights of a q4_1 (dtype 6) or q8_0 block tensor. */
static uint64_t block_row_bytes(int32_t wtype, uint32_t k)
{
    return (uint64_t)(k / ML_BLOCK) * (wtype == ML_Q4_1 ? ML_Q4_1_BYTES : ML_Q8_0_BYTES);
}

/* param_read_bytes: a dense bias is read twice (the overflow bound, then the
 * output); with the per-row bound (`bound` = 1) the weights and the bias are
 * read once more, row by row. */
static uint64_t param_read_bytes(const struct ml_node *n, const struct ml_desc *x)
{
    int bias = !ml_key_is_zero(n->tensor_key[1]);
    switch (n->op) {
    case ML_DENSE: {
        uint64_t m = n->out.dims[0], w = m * ml_elems(x);
        return w + (bias ? 8 * m : 0) + (n->p[1] ? w + 4 * m : 0);
    }
    case ML_CONV2D: {
        uint64_t oc = n->out.dims[2], w = oc * (uint64_t)n->p[1] * (uint64_t)n->p[2] * x->dims[2];
        return w + (bias ? 4 * oc : 0) + (n->p[9] ? w + 4 * oc : 0);
    }
    case ML_LUT:
        return 256;
    case ML_SOFTMAX:
        return 4 * 256;
    case ML_QDENSE:
    case ML_QDENSE_ARGMAX: {
        uint64_t rows = n->op == ML_QDENSE ? n->out.dims[1] : (uint32_t)n->p[4];
        return rows * block_row_bytes(n->p[0], x->dims[1]);
    }
    case ML_EMBEDDING:
        return (uint64_t)n->out.dims[0] * block_row_bytes(n->p[0], n->out.dims[1]);
    case ML_RMSNORM:
        return 2ull * x->dims[1];
    case ML_ROPE:
        return 4ull * n->out.dims[0] * (uint32_t)n->p[0];
    case ML_ATTENTION:
        return 4 * ML_EXP2_TABLE_LEN;
    case ML_SWIGLU:
        return 4 * ML_SIGMOID_TABLE_LEN;
    case ML_REQUANTIZE: /* the per-channel table (M0_c, t_c), int32 [C, 2] */
        return ml_key_is_zero(n->tensor_key[0]) ? 0 : 8ull * x->dims[x->rank - 1];
    }
    return 0;
}

/* _op_work_v2: ml-spec §10.4's work terms. */
static uint64_t op_work_v2(const struct ml_node *n, const struct ml_desc *ins[2])
{
    const struct ml_desc *x = ins[0];
    const int32_t *p = n->p;
    uint64_t e = ml_elems(&n->out), t = x->dims[0];
    switch (n->op) {
    case ML_QDENSE:
    case ML_QDENSE_ARGMAX: {
        uint64_t k = x->dims[1], rows = n->op == ML_QDENSE ? n->out.dims[1] : (uint32_t)p[4];
        int q4_1 = p[0] == ML_Q4_1;
        uint64_t mac = q4_1 ? ML_QDENSE_MAC_Q4_1 : ML_QDENSE_MAC_Q8_0;
        uint64_t per_out = n->op == ML_QDENSE_ARGMAX ? ML_QDENSE_OUT_ARGMAX
                           : n->out.dtype == ML_R16  ? ML_QDENSE_OUT_R16
                                                     : ML_QDENSE_OUT_INT32;
        return mac * t * rows * k + ML_QDENSE_BLOCK * t * rows * (k / 32) + (q4_1 ? ML_QDENSE_X * t * k : 0) +
               per_out * t * rows + ML_QDENSE_ROW * t;
    }
    case ML_ARGMAX_MERGE:
        return ML_MERGE_ROW * t;
    case ML_EMBEDDING:
        return ML_EMBED_ELEM * e + ML_EMBED_ROW * t;
    case ML_RMSNORM:
        return ML_RMSNORM_ELEM * e + ML_RMSNORM_ROW * t;
    case ML_ROPE:
        return ML_ROPE_ELEM * e + ML_ROPE_ROW * t;
    case ML_ATTENTION: {
        uint64_t hd = (uint32_t)p[0], nh = x->dims[1] / hd, keys = ins[1]->dims[0];
        return ML_ATTENTION_MAC * 2 * t * nh * keys * hd + ML_ATTENTION_SCORE * t * nh * keys +
               ML_ATTENTION_HEAD * t * nh + ML_ATTENTION_OUT * e + ML_ATTENTION_ROW * t;
    }
    case ML_SWIGLU:
        return ML_SWIGLU_ELEM * e + ML_ROW_FIXED * t;
    case ML_QUANTIZE:
        return ML_QUANTIZE_ELEM * e + ML_QUANTIZE_ROW * (e / n->out.dims[n->out.rank - 1]);
    case ML_ADD32:
        return ML_ADD32_ELEM * e;
    case ML_CONCAT: {
        uint64_t outer = 1;
        for (uint32_t i = 0; i < (uint32_t)p[0]; i++)
            outer *= x->dims[i];
        return ML_COPY_BYTE * ml_nbytes(&n->out) + ML_CONCAT_BLOCK * outer;
    }
    case ML_SLICE:
        return ML_COPY_BYTE * ml_nbytes(&n->out);
    case ML_EMIT:
        return ML_COPY_BYTE * ml_nbytes(&n->out) + ML_EMIT_FIXED;
    }
    return 0;
}

/* The per-row overflow bound's pass over W [rows, k] (`bound` = 1). */
static uint64_t row_bound_work(uint64_t rows, uint64_t k)
{
    return ML_ROW_BOUND_WEIGHT * rows * k + ML_ROW_BOUND_ROW * rows;
}

static uint64_t op_work(const struct ml_node *n, const struct ml_desc *ins[2])
{
    const struct ml_desc *x = ins[0];
    uint64_t e = ml_elems(&n->out);
    const int32_t *p = n->p;
    switch (n->op) {
    case ML_DENSE: {
        uint64_t m = n->out.dims[0], k = ml_elems(x);
        return ML_DENSE_MAC * m * k + ML_DENSE_ROW * m + (p[1] ? row_bound_work(m, k) : 0);
    }
    case ML_CONV2D: {
        uint64_t kh = (uint64_t)p[1], kw = (uint64_t)p[2], c = x->dims[2], oc = n->out.dims[2];
        return ML_CONV_MAC * e * kh * kw * c + ML_CONV_TAP * e * kh * kw + ML_CONV_ROW * e * kh +
               ML_CONV_OUT * e + ML_CONV_FILTER * oc + (p[9] ? row_bound_work(oc, kh * kw * c) : 0);
    }
    case ML_REQUANTIZE:
        return (p[5] == 2 ? ML_REQUANTIZE_F32_ELEM : ML_REQUANTIZE_ELEM) * e;
    case ML_ADD:
        return ML_ADD_ELEM * e;
    case ML_RELU:
        return ML_RELU_ELEM * e;
    case ML_MAXPOOL:
        return ML_MAXPOOL_WIN * e * (uint64_t)p[0] * (uint64_t)p[1] + ML_MAXPOOL_ROW * e * (uint64_t)p[0] +
               ML_MAXPOOL_OUT * e;
    case ML_AVGPOOL:
        return ML_AVGPOOL_WIN * e * (uint64_t)p[0] * (uint64_t)p[1] + ML_AVGPOOL_ROW * e * (uint64_t)p[0] +
               ML_AVGPOOL_OUT * e;
    case ML_RESHAPE:
        return ML_RESHAPE_BYTE * (uint64_t)ml_nbytes(&n->out);
    case ML_ARGMAX:
        return ML_ARGMAX_ELEM * (uint64_t)ml_elems(x);
    case ML_LUT:
        return ML_LUT_ELEM * e;
    case ML_SOFTMAX:
        return ML_SOFTMAX_ELEM * e;
    }
    return op_work_v2(n, ins);
}

uint64_t ml_node_work(const struct ml_node *n, const struct ml_desc *ins[2])
{
    return ML_STEPS_READ_BYTE * param_read_bytes(n, ins[0]) + op_work(n, ins) +
           ml_hash_steps(ml_nbytes(&n->out));
}

/* S_k from S_{k−1}: with D = ⌈log2(k + 2)⌉ the depth of S_k's tree, 2·D
 * keccak permutations and at most D + 1 64-byte preimages read. */
static uint64_t state_steps(uint32_t index)
{
    uint64_t depth = 0;
    while (((uint64_t)1 << depth) < (uint64_t)index + 2)
        depth++;
    return ML_STEPS_KECCAK * 2 * depth + ML_STEPS_STATE_NODE * (depth + 1);
}

uint64_t ml_node_bound(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2])
{
    uint64_t in_bytes = 0;
    for (uint32_t j = 0; j < n->n_inputs; j++)
        in_bytes += ml_nbytes(ins[j]);
    return ML_STEPS_NODE_BASE + ML_STEPS_READ_BYTE * in_bytes + ml_node_work(n, ins) + state_steps(index);
}

void ml_check_node_cost(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2])
{
    if (ml_node_bound(index, n, ins) > ML_MAX_NODE_STEPS)
        ml_malformed("a node whose step bound is above 2^31: split the node");
}

uint64_t ml_model_fixed_bound(const struct ml_header *h)
{
    return ML_STEPS_MODEL_BASE + ML_STEPS_READ_BYTE * (uint64_t)ml_nbytes(&h->input) +
           ml_hash_steps((uint64_t)ML_KEY_SIZE * (h->node_count + 1));
}
