/* One node of a model, its parameter tensors read by key (ml-spec §4, §7). */
#include "ml.h"
#include "rt.h"

static uint8_t weight_buffer[ML_WEIGHT_BUFFER] __attribute__((aligned(32)));
static uint8_t table_buffer[4 * 256] __attribute__((aligned(32)));

void *ml_alloc(uint32_t size)
{
    static uint32_t top;
    if (top == 0)
        top = (uint32_t)sys_brk(0);
    uint32_t start = (top + 7) & ~7u;
    uint32_t end = start + size;
    if (end < start || sys_brk(end) != end)
        ml_malformed("out of VM memory");
    top = end;
    return (void *)start;
}

/* A parameter tensor by key, which must have exactly `size` bytes. */
static void param_src(struct ml_src *s, const uint8_t key[ML_KEY_SIZE], uint32_t size)
{
    ml_src_key(s, key);
    if (s->size != size)
        ml_malformed("a tensor whose size does not match its desc");
}

/* The dense/conv2d overflow bound: K·255·128 + max|bias| ≤ 2^31 − 1, with the
 * bias streamed once through the weight buffer. */
static void check_accumulator_bound(uint32_t K, const struct ml_src *bias)
{
    uint64_t max_bias = 0;
    for (uint32_t pos = 0; bias && pos < bias->size; pos += ML_WEIGHT_BUFFER) {
        uint32_t n = bias->size - pos < ML_WEIGHT_BUFFER ? bias->size - pos : ML_WEIGHT_BUFFER;
        ml_src_read(bias, pos, weight_buffer, n);
        const int32_t *b = (const int32_t *)weight_buffer;
        for (uint32_t i = 0; i < n / 4; i++) {
            int64_t v = b[i];
            uint64_t mag = (uint64_t)(v < 0 ? -v : v);
            if (mag > max_bias)
                max_bias = mag;
        }
    }
    if ((uint64_t)K * ML_MAX_PRODUCT + max_bias > 2147483647u)
        ml_malformed("the dense/conv2d overflow bound does not hold");
}

/* The per-row overflow bound (`bound` = 1, version 2): for each of the `rows` rows of W int8
 * [rows, K], 255·Σ_k |W[r, k]| + |bias[r]| ≤ 2^31 − 1 (every partial sum of the row then fits an
 * int32). W is streamed once more through the weight buffer; each row's bias is read when the row
 * ends. */
static void check_row_bounds(uint32_t rows, uint32_t K, const struct ml_src *w, const struct ml_src *bias)
{
    uint32_t total = rows * K, pos = 0, r = 0, k = 0, sum = 0; /* sum ≤ 128·K < 2^32 */
    while (pos < total) {
        uint32_t n = total - pos < ML_WEIGHT_BUFFER ? total - pos : ML_WEIGHT_BUFFER;
        ml_src_read(w, pos, weight_buffer, n);
        const int8_t *wb = (const int8_t *)weight_buffer;
        uint32_t i = 0;
        while (i < n) {
            uint32_t run = K - k < n - i ? K - k : n - i; /* the rest of row r in this piece */
            for (uint32_t j = 0; j < run; j++) {
                int32_t v = wb[i + j];
                sum += (uint32_t)(v < 0 ? -v : v);
            }
            i += run;
            k += run;
            if (k == K) {
                int32_t b = 0;
                if (bias)
                    ml_src_read(bias, 4 * r, &b, 4);
                uint64_t mag = (uint64_t)(b < 0 ? -(int64_t)b : b);
                if (255ull * sum + mag > 2147483647u)
                    ml_malformed("the dense/conv2d overflow bound does not hold");
                r++;
                k = sum = 0;
            }
        }
        pos += n;
    }
}

/* requantize per channel: the table (M0_c, t_c) int32 [C, 2] streamed through the weight buffer,
 * each piece's ranges checked (M0_c ∈ [1, 2^31 − 1], below 2^24 in mode 2, t_c ∈ [1, 62]) before its
 * channels are computed. */
static void requantize_channels(const struct ml_desc *x, uint32_t elems, const int32_t *p,
                                const struct ml_src *table, const int32_t *in, int8_t *out)
{
    uint32_t C = x->dims[x->rank - 1], rows = elems / C, piece = ML_WEIGHT_BUFFER / 8;
    const int32_t *mt = (const int32_t *)weight_buffer;
    for (uint32_t c0 = 0; c0 < C; c0 += piece) {
        uint32_t nc = C - c0 < piece ? C - c0 : piece;
        ml_src_read(table, 8 * c0, weight_buffer, 8 * nc);
        for (uint32_t c = 0; c < nc; c++)
            if (mt[2 * c] < 1 || mt[2 * c + 1] < 1 || mt[2 * c + 1] > 62 || (p[5] == 2 && mt[2 * c] >= 1 << 24))
                ml_malformed("a param outside its range");
        ml_requantize_channels(in + c0, rows, C, nc, mt, p[2], p[3], p[4], p[5], out + c0);
    }
}

void ml_exec_node(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2],
                  const uint8_t *in[2], uint8_t *out)
{
    struct ml_param_sizes sizes;
    ml_check_node(index, n, ins, &sizes);
    const struct ml_desc *x = ins[0];
    uint32_t elems = ml_elems(&n->out);
    const int32_t *p = n->p;
    struct ml_src w, bias;
    const struct ml_src *bias_src = 0;
    if (sizes.bytes[0])
        param_src(&w, n->tensor_key[0], sizes.bytes[0]);
    if (sizes.bytes[1]) {
        param_src(&bias, n->tensor_key[1], sizes.bytes[1]);
        bias_src = &bias;
    }
    switch (n->op) {
    case ML_DENSE: {
        uint32_t K = ml_elems(x), M = n->out.dims[0];
        if (p[1])
            check_row_bounds(M, K, &w, bias_src);
        else
            check_accumulator_bound(K, bias_src);
        int32_t *y = (int32_t *)out;
        if (bias_src)
            ml_src_read(bias_src, 0, y, 4 * M);
        else
            memset(y, 0, 4 * M);
        ml_dense((const int8_t *)in[0], K, M, p[0], &w, y, weight_buffer);
        break;
    }
    case ML_CONV2D: {
        struct ml_conv cv = {
            .H = x->dims[0], .W = x->dims[1], .C = x->dims[2],
            .OH = n->out.dims[0], .OW = n->out.dims[1], .OC = n->out.dims[2],
            .KH = (uint32_t)p[1], .KW = (uint32_t)p[2], .sh = (uint32_t)p[3], .sw = (uint32_t)p[4],
            .pt = (uint32_t)p[5], .pl = (uint32_t)p[6], .zx = p[0],
        };
        if (p[9])
            check_row_bounds(cv.OC, cv.KH * cv.KW * cv.C, &w, bias_src);
        else
            check_accumulator_bound(cv.KH * cv.KW * cv.C, bias_src);
        ml_conv2d((const int8_t *)in[0], &cv, &w, bias_src, (int32_t *)out, weight_buffer);
        break;
    }
    case ML_REQUANTIZE:
        if (sizes.bytes[0])
            requantize_channels(x, elems, p, &w, (const int32_t *)in[0], (int8_t *)out);
        else
            ml_requantize((const int32_t *)in[0], elems, p[0], p[1], p[2], p[3], p[4], p[5], (int8_t *)out);
        break;
    case ML_ADD:
        ml_add((const int8_t *)in[0], (const int8_t *)in[1], elems, p, (int8_t *)out);
        break;
    case ML_RELU:
        if (x->dtype == ML_INT8)
            ml_relu_i8((const int8_t *)in[0], elems, p[0], (int8_t *)out);
        else
            ml_relu_i32((const int32_t *)in[0], elems, p[0], (int32_t *)out);
        break;
    case ML_MAXPOOL:
    case ML_AVGPOOL: {
        struct ml_pool pl = {
            .H = x->dims[0], .W = x->dims[1], .C = x->dims[2], .OH = n->out.dims[0],
            .OW = n->out.dims[1], .KH = (uint32_t)p[0], .KW = (uint32_t)p[1],
            .sh = (uint32_t)p[2], .sw = (uint32_t)p[3],
        };
        if (n->op == ML_MAXPOOL)
            ml_maxpool((const int8_t *)in[0], &pl, (int8_t *)out);
        else
            ml_avgpool((const int8_t *)in[0], &pl, (int8_t *)out);
        break;
    }
    case ML_RESHAPE:
        memcpy(out, in[0], ml_nbytes(&n->out));
        break;
    case ML_ARGMAX: {
        int32_t i = x->dtype == ML_INT8 ? ml_argmax_i8((const int8_t *)in[0], ml_elems(x))
                                        : ml_argmax_i32((const int32_t *)in[0], ml_elems(x));
        memcpy(out, &i, 4);
        break;
    }
    case ML_LUT:
        ml_src_read(&w, 0, table_buffer, 256);
        ml_lut((const int8_t *)in[0], elems, (const int8_t *)table_buffer, (int8_t *)out);
        break;
    case ML_SOFTMAX: {
        ml_src_read(&w, 0, table_buffer, 4 * 256);
        const int32_t *e = (const int32_t *)table_buffer;
        for (int j = 0; j < 256; j++)
            if (e[j] < 0 || e[j] > ML_SOFTMAX_E_MAX)
                ml_malformed("a softmax table value outside 0 … 2^16");
        ml_softmax((const int8_t *)in[0], elems, e, (int8_t *)out);
        break;
    }
    default: /* version 2 (ml-spec §10) */
        ml_exec_v2(n, ins, in, out, &w, weight_buffer);
        break;
    }
}
