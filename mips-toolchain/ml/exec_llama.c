/* One version-2 node (ml-spec §10): its parameter tensor by key, the checks
 * only the tensor shows, scratch memory, the kernel of ops_llama.c.
 *
 * Weights stream through the weight buffer (whole GGUF blocks, only the
 * rows the node reads, each block's scales decoded and checked as it
 * arrives); a rope table is read one position at a time; the exp2 and
 * sigmoid tables (4 100 and 8 196 bytes) are read whole into a static
 * buffer and checked; an rmsnorm weight vector (2·H bytes) is read into the
 * scratch memory. */
#include "ml.h"
#include "rt.h"

static int32_t table[ML_SIGMOID_TABLE_LEN] __attribute__((aligned(32)));

/* Scratch memory that the nodes of one run share: the first request is
 * allocated exactly, a larger later one takes at least twice the previous
 * (so the whole-model program holds < 4× its largest request). */
static void *scratch(uint64_t bytes)
{
    static uint8_t *mem;
    static uint32_t cap;
    if (bytes > 0x7FFFFFFFu)
        ml_malformed("out of VM memory");
    if (mem && bytes <= cap)
        return mem;
    uint32_t want = (uint32_t)bytes;
    if (mem && want < 2 * cap)
        want = 2 * cap;
    mem = ml_alloc(want);
    cap = want;
    return mem;
}

/* Reads a Q30 table of `len` int32 and checks its range (ml-spec §10.1). */
static const int32_t *read_table(const struct ml_src *w, uint32_t len)
{
    ml_src_read(w, 0, table, 4 * len);
    for (uint32_t i = 0; i < len; i++)
        if (table[i] < 0 || table[i] > ML_TABLE_ONE)
            ml_malformed("a table value outside 0 … 2^30");
    return table;
}

void ml_exec_v2(const struct ml_node *n, const struct ml_desc *ins[2], const uint8_t *in[2], uint8_t *out,
                const struct ml_src *w, uint8_t *buf)
{
    const struct ml_desc *x = ins[0];
    const int32_t *p = n->p;
    uint32_t T = x->dims[0];
    switch (n->op) {
    case ML_QDENSE:
    case ML_QDENSE_ARGMAX: {
        uint32_t K = x->dims[1], nb = K / ML_BLOCK, xsize = ml_itemsize(x->dtype);
        uint32_t M = n->op == ML_QDENSE ? n->out.dims[1] : (uint32_t)p[4];
        struct ml_qmat qm = { w, (uint32_t)p[0], K, (uint32_t)p[3], M, p[1] };
        int64_t *acc = scratch(8ull * T * M + 4ull * T * nb);
        int32_t *xsum = (int32_t *)(acc + (uint64_t)T * M);
        if (n->op == ML_QDENSE)
            ml_qdense(in[0], T, xsize, &qm, n->out.dtype == ML_INT32 ? p[4] : -1, out, acc, xsum, buf);
        else
            ml_qdense_argmax(in[0], T, xsize, &qm, (int32_t *)out, acc, xsum, buf);
        break;
    }
    case ML_ARGMAX_MERGE:
        ml_argmax_merge((const int32_t *)in[0], (const int32_t *)in[1], T, (int32_t *)out);
        break;
    case ML_EMBEDDING: {
        struct ml_qmat qm = { w, (uint32_t)p[0], n->out.dims[1], 0, (uint32_t)p[2], p[1] };
        ml_embedding((const int32_t *)in[0], T, x->rank == 1 ? 1 : ML_ARGMAX_RECORD, &qm, p[3], (int32_t *)out,
                     buf);
        break;
    }
    case ML_RMSNORM: {
        uint32_t H = x->dims[1];
        int64_t *v = scratch(10ull * H);
        int16_t *g = (int16_t *)(v + H);
        ml_src_read(w, 0, g, 2 * H);
        ml_rmsnorm((const int32_t *)in[0], T, H, g, p[0], p[1], out, v);
        break;
    }
    case ML_ROPE:
        ml_rope(in[0], T, x->dims[1], (uint32_t)p[0], (uint32_t)p[1], w, out, scratch(8ull * x->dims[1]), buf);
        break;
    case ML_ATTENTION: {
        const int32_t *X = read_table(w, ML_EXP2_TABLE_LEN);
        if (X[0] != ML_TABLE_ONE)
            ml_malformed("an exp2 table that does not start with 2^30");
        uint32_t L = ins[1]->dims[0], hd = (uint32_t)p[0], W = x->dims[1];
        struct ml_attn at = { T, L, W / hd, ins[1]->dims[2] / hd, hd, p[1], p[2] };
        int64_t *lg = scratch(8ull * L + 8ull * W + 12ull * L);
        int32_t *pw = (int32_t *)(lg + L + W);
        ml_attention(&at, in[0], in[1], X, out, lg, pw, lg + L, pw + L, pw + 2 * L);
        break;
    }
    case ML_SWIGLU:
        ml_swiglu(in[0], in[1], T, x->dims[1], read_table(w, ML_SIGMOID_TABLE_LEN), out, scratch(8ull * x->dims[1]));
        break;
    case ML_QUANTIZE: {
        uint32_t K = x->dims[x->rank - 1], rows = ml_elems(x) / K;
        if (x->dtype == ML_INT32)
            ml_quantize_i32((const int32_t *)in[0], rows, K, p[0], n->out.dtype == ML_R16 ? 32767 : 127, out);
        else
            ml_quantize_r16(in[0], rows, K, out);
        break;
    }
    case ML_ADD32:
        ml_add32((const int32_t *)in[0], (const int32_t *)in[1], ml_elems(x), (int32_t *)out);
        break;
    case ML_CONCAT: {
        /* For every index over dims[0 … axis−1]: a's block, then b's. */
        uint32_t outer = 1;
        for (uint32_t i = 0; i < (uint32_t)p[0]; i++)
            outer *= x->dims[i];
        uint32_t ab = ml_nbytes(x) / outer, bb = ml_nbytes(ins[1]) / outer;
        const uint8_t *a = in[0], *b = in[1];
        for (uint32_t o = 0; o < outer; o++, a += ab, b += bb) {
            memcpy(out, a, ab);
            out += ab;
            memcpy(out, b, bb);
            out += bb;
        }
        break;
    }
    case ML_SLICE: {
        uint32_t row = ml_nbytes(x) / T;
        memcpy(out, in[0] + (uint32_t)p[0] * row, ml_nbytes(&n->out));
        break;
    }
    case ML_EMIT: {
        /* Position t + 1 takes the record's token when the task generates it: P ≤ t + 1 < P + n. */
        const int32_t *a = (const int32_t *)in[0];
        int64_t pos = (int64_t)p[0] + 1, first = a[0], count = a[1];
        memcpy(out, in[0], ml_nbytes(x));
        if (first <= pos && pos < first + count)
            ((int32_t *)out)[ML_TRANSCRIPT_HEADER + pos] = ((const int32_t *)in[1])[0];
        break;
    }
    }
}
