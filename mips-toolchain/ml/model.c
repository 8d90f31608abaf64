/* The manifest and the op rules of docs/ml-spec.md §3–§4, as the MIPS programs
 * check them. These checks are a subset of opml.ml.format's (that reader also
 * checks the whole graph and every tensor's key), so a model the Python reader
 * accepts never fails here. */
#include "ml.h"
#include "rt.h"

#define INT32_MAX_ 2147483647

void ml_malformed(const char *what)
{
    print_str_fd(2, "ml: malformed: ");
    print_str_fd(2, what);
    print_str_fd(2, "\n");
    sys_exit_group(ML_EXIT_MALFORMED);
}

static uint32_t u32_at(const uint8_t *b)
{
    return (uint32_t)b[0] | (uint32_t)b[1] << 8 | (uint32_t)b[2] << 16 | (uint32_t)b[3] << 24;
}

/* The version of the manifest being read (ml_parse_header sets it). */
static uint32_t manifest_version = 1;

uint32_t ml_version(void)
{
    return manifest_version;
}

uint32_t ml_itemsize(uint32_t dtype)
{
    switch (dtype) {
    case ML_INT8:
    case ML_R8:
        return 1;
    case ML_INT16:
    case ML_R16:
        return 2;
    }
    return 4;
}

int ml_is_rows(uint32_t dtype)
{
    return dtype == ML_R16 || dtype == ML_R8;
}

uint32_t ml_elems(const struct ml_desc *d)
{
    uint32_t n = 1;
    for (uint32_t i = 0; i < d->rank; i++)
        n *= d->dims[i];
    return n;
}

uint32_t ml_nbytes(const struct ml_desc *d)
{
    uint32_t size = ml_itemsize(d->dtype);
    if (ml_is_rows(d->dtype)) {
        uint32_t k = d->dims[d->rank - 1];
        return ml_elems(d) / k * (ML_ROW_HEADER + k * size);
    }
    return ml_elems(d) * size;
}

int ml_key_is_zero(const uint8_t key[ML_KEY_SIZE])
{
    for (int i = 0; i < ML_KEY_SIZE; i++)
        if (key[i])
            return 0;
    return 1;
}

/* dtype, rank and dims at `b` (12 + 16 bytes apart as in both layouts). */
static void parse_desc(const uint8_t *dtype, const uint8_t *rank, const uint8_t *dims,
                       struct ml_desc *d)
{
    d->dtype = u32_at(dtype);
    /* A value's dtype: int8/int32 in version 1, any but the block dtypes in version 2. */
    if (d->dtype < ML_INT8 || d->dtype > (manifest_version == 1 ? ML_INT32 : ML_R8))
        ml_malformed("unknown dtype code");
    d->rank = u32_at(rank);
    if (d->rank < 1 || d->rank > ML_MAX_RANK)
        ml_malformed("rank outside 1 … 4");
    for (uint32_t i = 0; i < ML_MAX_RANK; i++) {
        d->dims[i] = u32_at(dims + 4 * i);
        if (i >= d->rank && d->dims[i] != 0)
            ml_malformed("non-zero dim past the rank");
    }
}

/* _check_desc_limits: every dim ≥ 1 and at most 2^24 bytes (checked without
 * 32-bit overflow: a row-scaled value has more bytes than elems·itemsize). */
static void check_limits(const struct ml_desc *d)
{
    uint64_t bytes = ml_itemsize(d->dtype);
    for (uint32_t i = 0; i < d->rank; i++) {
        if (d->dims[i] < 1)
            ml_malformed("a dim is 0");
        bytes *= d->dims[i];
        if (bytes > ML_MAX_TENSOR_BYTES)
            ml_malformed("a tensor of more than 2^24 bytes");
    }
    if (ml_is_rows(d->dtype) && bytes + (uint64_t)ML_ROW_HEADER * (ml_elems(d) / d->dims[d->rank - 1]) >
                                    ML_MAX_TENSOR_BYTES)
        ml_malformed("a tensor of more than 2^24 bytes");
}

void ml_parse_header(const uint8_t b[ML_HEADER_SIZE], struct ml_header *h)
{
    if (b[0] != 'O' || b[1] != 'P' || b[2] != 'M' || b[3] != 'M')
        ml_malformed("bad manifest magic");
    uint32_t version = u32_at(b + 4);
    if (version != 1 && version != 2)
        ml_malformed("unknown manifest version");
    manifest_version = version;
    h->node_count = u32_at(b + 8);
    if (h->node_count < 1 || h->node_count > (version == 1 ? ML_MAX_NODES : ML_MAX_NODES_V2))
        ml_malformed("node count outside 1 … 4096 (version 1) or 2^20 (version 2)");
    parse_desc(b + 12, b + 16, b + 20, &h->input);
    for (int i = 36; i < ML_HEADER_SIZE; i++)
        if (b[i])
            ml_malformed("non-zero reserved header byte");
    check_limits(&h->input);
}

void ml_parse_node(const uint8_t b[ML_NODE_SIZE], struct ml_node *n)
{
    n->op = u32_at(b);
    if (n->op < ML_DENSE || n->op > (manifest_version == 1 ? ML_OP_LAST_V1 : ML_OP_LAST))
        ml_malformed("unknown op code");
    n->n_inputs = u32_at(b + 4);
    int two = n->op == ML_ADD || n->op == ML_ARGMAX_MERGE || n->op == ML_ATTENTION || n->op == ML_SWIGLU ||
              n->op == ML_ADD32 || n->op == ML_CONCAT || n->op == ML_EMIT;
    if (n->n_inputs != (two ? 2u : 1u))
        ml_malformed("wrong number of inputs for the op");
    n->input[0] = u32_at(b + 8);
    n->input[1] = u32_at(b + 12);
    if (n->n_inputs == 1 && n->input[1] != 0)
        ml_malformed("input[1] of a one-input op is not 0");
    parse_desc(b + 16, b + 20, b + 24, &n->out);
    check_limits(&n->out);
    static const uint8_t used[ML_OP_LAST + 1] = {
        [ML_DENSE] = 2, [ML_CONV2D] = 10, [ML_REQUANTIZE] = 6, [ML_ADD] = 8, [ML_RELU] = 1,
        [ML_MAXPOOL] = 4, [ML_AVGPOOL] = 4, [ML_QDENSE] = 5, [ML_QDENSE_ARGMAX] = 5, [ML_EMBEDDING] = 4,
        [ML_RMSNORM] = 2, [ML_ROPE] = 3, [ML_ATTENTION] = 3, [ML_QUANTIZE] = 1, [ML_CONCAT] = 1,
        [ML_SLICE] = 1, [ML_EMIT] = 1,
    };
    for (uint32_t j = 0; j < ML_N_PARAMS; j++) {
        n->p[j] = (int32_t)u32_at(b + 40 + 4 * j);
        if (j >= used[n->op] && n->p[j] != 0)
            ml_malformed("non-zero unused param");
    }
    memcpy(n->tensor_key, b + 96, sizeof n->tensor_key);
}

static void in_range(int32_t v, int32_t lo, int32_t hi)
{
    if (v < lo || v > hi)
        ml_malformed("a param outside its range");
}

static void want_dtype(const struct ml_desc *d, uint32_t dtype)
{
    if (d->dtype != dtype)
        ml_malformed("an input of the wrong dtype for the op");
}

static void want_rank(const struct ml_desc *d, uint32_t rank)
{
    if (d->rank != rank)
        ml_malformed("a tensor of the wrong rank for the op");
}

static void want_dtype2(const struct ml_desc *d, uint32_t a, uint32_t b)
{
    if (d->dtype != a && d->dtype != b)
        ml_malformed("an input of the wrong dtype for the op");
}

static void in_range64(int64_t v, int64_t lo, int64_t hi)
{
    if (v < lo || v > hi)
        ml_malformed("a param outside its range");
}

/* conv_out_dim: (size + a + b − kernel) / stride + 1 when exact, else 0. */
static uint32_t conv_out_dim(uint32_t size, int32_t kernel, int32_t stride, int32_t a, int32_t b)
{
    int64_t span = (int64_t)size + a + b - kernel;
    if (span < 0 || span % stride)
        return 0;
    return (uint32_t)(span / stride) + 1;
}

static void desc3(struct ml_desc *d, uint32_t dtype, uint32_t d0, uint32_t d1, uint32_t d2)
{
    d->dtype = dtype;
    d->rank = 3;
    d->dims[0] = d0;
    d->dims[1] = d1;
    d->dims[2] = d2;
    d->dims[3] = 0;
}

static int same_desc(const struct ml_desc *a, const struct ml_desc *b)
{
    if (a->dtype != b->dtype || a->rank != b->rank)
        return 0;
    for (uint32_t i = 0; i < ML_MAX_RANK; i++)
        if (a->dims[i] != b->dims[i])
            return 0;
    return 1;
}

static void desc2(struct ml_desc *d, uint32_t dtype, uint32_t d0, uint32_t d1)
{
    d->dtype = dtype;
    d->rank = 2;
    d->dims[0] = d0;
    d->dims[1] = d1;
    d->dims[2] = d->dims[3] = 0;
}

/* _weight_params: wtype and F of a node that reads a block tensor. */
static void weight_params(const int32_t *p)
{
    in_range(p[0], ML_Q4_1, ML_Q8_0);
    in_range(p[1], 0, ML_MAX_F);
}

/* _want_rows_of: a block row of k weights, whole blocks, at most `limit`. */
static void want_block_row(uint32_t k, uint32_t limit)
{
    if (k % ML_BLOCK)
        ml_malformed("a block tensor's rows are not whole blocks of 32");
    if (k > limit)
        ml_malformed("a block tensor's rows are too long for the op");
}

/* _want_shard: rows row0 … row0 + m − 1 of the weight's Mt rows. */
static void want_shard(int32_t row0, uint64_t m, int32_t mt)
{
    in_range(mt, 1, INT32_MAX_);
    in_range(row0, 0, INT32_MAX_);
    if ((uint64_t)row0 + m > (uint64_t)mt)
        ml_malformed("a row split outside its weight's rows");
}

static uint64_t block_tensor_bytes(uint32_t wtype, uint64_t rows, uint32_t k)
{
    return rows * (k / ML_BLOCK) * (wtype == ML_Q4_1 ? ML_Q4_1_BYTES : ML_Q8_0_BYTES);
}

/* _expected_v2 of opml.ml.format: the op rules of ml-spec §10.2. */
static void expected_v2(const struct ml_node *n, const struct ml_desc *ins[2], struct ml_desc *want,
                        uint64_t sizes[2])
{
    const struct ml_desc *x = ins[0], *b = ins[1];
    const struct ml_desc *out = &n->out;
    const int32_t *p = n->p;
    switch (n->op) {
    case ML_QDENSE:
    case ML_QDENSE_ARGMAX: {
        want_dtype2(x, ML_R16, ML_R8);
        want_rank(x, 2);
        weight_params(p);
        want_block_row(x->dims[1], ML_MAX_QDENSE_K);
        if (n->op == ML_QDENSE_ARGMAX) {
            in_range(p[4], 1, INT32_MAX_);
            want_shard(p[3], (uint32_t)p[4], p[2]);
            desc2(want, ML_INT32, x->dims[0], ML_ARGMAX_RECORD);
        } else {
            want_dtype2(out, ML_R16, ML_INT32);
            want_rank(out, 2);
            want_shard(p[3], out->dims[1], p[2]);
            in_range(p[4], 0, out->dtype == ML_INT32 ? ML_MAX_OUT_FRAC : 0);
            desc2(want, out->dtype, x->dims[0], out->dims[1]);
        }
        sizes[0] = block_tensor_bytes((uint32_t)p[0], (uint32_t)p[2], x->dims[1]);
        break;
    }
    case ML_ARGMAX_MERGE:
        want_dtype(x, ML_INT32);
        want_dtype(b, ML_INT32);
        if (x->rank != 2 || x->dims[1] != ML_ARGMAX_RECORD || b->rank != 2 || b->dims[1] != ML_ARGMAX_RECORD)
            ml_malformed("an input that is not argmax records int32 [T, 3]");
        if (!same_desc(x, b))
            ml_malformed("argmax_merge inputs differ");
        break;
    case ML_EMBEDDING:
        want_dtype(x, ML_INT32);
        if (!(x->rank == 1 || (x->rank == 2 && x->dims[1] == ML_ARGMAX_RECORD)))
            ml_malformed("embedding ids that are not int32 [T] or records int32 [T, 3]");
        weight_params(p);
        in_range(p[2], 1, INT32_MAX_);
        in_range(p[3], 0, ML_MAX_OUT_FRAC);
        want_rank(out, 2);
        want_block_row(out->dims[1], INT32_MAX_);
        desc2(want, ML_INT32, x->dims[0], out->dims[1]);
        sizes[0] = block_tensor_bytes((uint32_t)p[0], (uint32_t)p[2], out->dims[1]);
        break;
    case ML_RMSNORM:
        want_dtype(x, ML_INT32);
        want_rank(x, 2);
        if (x->dims[1] > ML_MAX_NORM_H)
            ml_malformed("rmsnorm rows longer than 2^16");
        in_range(p[0], 0, ML_MAX_OUT_FRAC);
        in_range(p[1], 0, ML_MAX_NORM_EPS);
        want->dtype = ML_R16;
        sizes[0] = 2ull * x->dims[1];
        break;
    case ML_ROPE:
        want_dtype(x, ML_R16);
        want_rank(x, 2);
        in_range(p[0], 2, ML_MAX_HEAD_DIM);
        if (p[0] % 2 || x->dims[1] % (uint32_t)p[0])
            ml_malformed("a rope head dim that is odd or does not divide the row");
        in_range(p[1], 0, ML_MAX_ROPE_P);
        in_range64(p[2], (int64_t)p[1] + x->dims[0], ML_MAX_ROPE_P);
        sizes[0] = 4ull * (uint32_t)p[2] * (uint32_t)p[0];
        break;
    case ML_ATTENTION: {
        want_dtype(x, ML_R16);
        want_dtype(b, ML_R16);
        want_rank(x, 2);
        if (b->rank != 3 || b->dims[1] != 2)
            ml_malformed("an attention kv that is not r16 [L, 2, nkv·hd]");
        in_range(p[0], 1, ML_MAX_HEAD_DIM);
        in_range(p[1], 1, ML_MAX_ATTENTION_MUL);
        in_range(p[2], 0, ML_MAX_SHIFT);
        uint32_t hd = (uint32_t)p[0], wq = x->dims[1], wkv = b->dims[2];
        if (wq % hd || wkv % hd || (wq / hd) % (wkv / hd))
            ml_malformed("attention rows that are not nh, nkv heads with nkv | nh");
        if (x->dims[0] > b->dims[0] || b->dims[0] > ML_MAX_ATTENTION_L)
            ml_malformed("an attention that needs T ≤ L ≤ 2^16");
        sizes[0] = 4 * ML_EXP2_TABLE_LEN;
        break;
    }
    case ML_SWIGLU:
        want_dtype(x, ML_R16);
        want_rank(x, 2);
        if (!same_desc(x, b))
            ml_malformed("swiglu inputs differ");
        sizes[0] = 4 * ML_SIGMOID_TABLE_LEN;
        break;
    case ML_QUANTIZE:
        want_dtype2(x, ML_INT32, ML_R16);
        if (x->dtype == ML_INT32) {
            want_dtype2(out, ML_R16, ML_R8);
            in_range(p[0], -ML_MAX_SHIFT, ML_MAX_SHIFT);
        } else {
            want_dtype(out, ML_R8);
            in_range(p[0], 0, 0);
        }
        want->dtype = out->dtype;
        break;
    case ML_ADD32:
        want_dtype(x, ML_INT32);
        if (!same_desc(x, b))
            ml_malformed("add32 inputs differ");
        break;
    case ML_CONCAT: {
        uint32_t axis = (uint32_t)p[0];
        in_range(p[0], 0, (int32_t)x->rank - (ml_is_rows(x->dtype) ? 2 : 1));
        if (b->dtype != x->dtype || b->rank != x->rank)
            ml_malformed("concat inputs differ beyond the axis");
        for (uint32_t i = 0; i < x->rank; i++)
            if (i != axis && x->dims[i] != b->dims[i])
                ml_malformed("concat inputs differ beyond the axis");
        uint64_t d = (uint64_t)x->dims[axis] + b->dims[axis];
        if (d > 0xFFFFFFFFu)
            ml_malformed("an output desc that the op's rule does not give");
        want->dims[axis] = (uint32_t)d;
        break;
    }
    case ML_SLICE:
        if (ml_is_rows(x->dtype) && x->rank < 2)
            ml_malformed("a slice that cuts the only row of a row-scaled value");
        in_range64(p[0], 0, (int64_t)x->dims[0] - 1);
        if ((uint64_t)(uint32_t)p[0] + out->dims[0] > x->dims[0])
            ml_malformed("slice rows outside the input");
        want->dims[0] = out->dims[0];
        break;
    case ML_EMIT:
        want_dtype(x, ML_INT32);
        want_rank(x, 1);
        if (x->dims[0] < ML_TRANSCRIPT_HEADER + 2)
            ml_malformed("a transcript without two token positions");
        if (b->dtype != ML_INT32 || b->rank != 2 || b->dims[0] != 1 || b->dims[1] != ML_ARGMAX_RECORD)
            ml_malformed("emit takes one argmax record");
        in_range64(p[0], 0, (int64_t)x->dims[0] - ML_TRANSCRIPT_HEADER - 2);
        break;
    }
}

/* expected_output of opml.ml.format, with the tensor sizes of param_tensors. */
static void expected_output(const struct ml_node *n, const struct ml_desc *ins[2],
                            struct ml_desc *want, uint64_t sizes[2])
{
    const struct ml_desc *x = ins[0];
    const int32_t *p = n->p;
    *want = *x;
    sizes[0] = sizes[1] = 0;
    switch (n->op) {
    case ML_DENSE:
        want_dtype(x, ML_INT8);
        in_range(p[0], -128, 127);
        in_range(p[1], 0, manifest_version == 1 ? 0 : 1); /* bound: 1 (per row) only in version 2 */
        want_rank(&n->out, 1);
        *want = n->out;
        want->dtype = ML_INT32;
        sizes[0] = (uint64_t)n->out.dims[0] * ml_elems(x);
        sizes[1] = 4ull * n->out.dims[0];
        break;
    case ML_CONV2D: {
        want_dtype(x, ML_INT8);
        want_rank(x, 3);
        want_rank(&n->out, 3);
        in_range(p[0], -128, 127);
        in_range(p[1], 1, ML_MAX_FILTER_ELEMS);
        in_range(p[2], 1, ML_MAX_FILTER_ELEMS);
        in_range(p[3], 1, INT32_MAX_);
        in_range(p[4], 1, INT32_MAX_);
        in_range(p[5], 0, p[1] - 1);
        in_range(p[7], 0, p[1] - 1);
        in_range(p[6], 0, p[2] - 1);
        in_range(p[8], 0, p[2] - 1);
        in_range(p[9], 0, manifest_version == 1 ? 0 : 1); /* bound: 1 (per row) only in version 2 */
        uint64_t filter = (uint64_t)p[1] * (uint64_t)p[2] * x->dims[2];
        if (filter > ML_MAX_FILTER_ELEMS)
            ml_malformed("a conv2d filter of more than 4096 elements");
        uint32_t oh = conv_out_dim(x->dims[0], p[1], p[3], p[5], p[7]);
        uint32_t ow = conv_out_dim(x->dims[1], p[2], p[4], p[6], p[8]);
        if (oh == 0 || ow == 0)
            ml_malformed("a conv2d window that does not tile its input");
        desc3(want, ML_INT32, oh, ow, n->out.dims[2]);
        sizes[0] = (uint64_t)n->out.dims[2] * filter;
        sizes[1] = 4ull * n->out.dims[2];
        break;
    }
    case ML_REQUANTIZE:
        want_dtype(x, ML_INT32);
        if (ml_key_is_zero(n->tensor_key[0])) {
            in_range(p[0], 1, INT32_MAX_);
            in_range(p[1], 1, 62);
        } else { /* per channel (version 2): (M0_c, t_c) int32 [C, 2], C the last axis; checked on read */
            if (manifest_version == 1)
                ml_malformed("a per-channel requantize table in a version-1 manifest");
            in_range(p[0], 0, 0);
            in_range(p[1], 0, 0);
            sizes[0] = 8ull * x->dims[x->rank - 1];
        }
        in_range(p[2], -128, 127);
        in_range(p[3], -128, 127);
        in_range(p[4], p[3], 127);
        in_range(p[5], 0, manifest_version == 1 ? 0 : 2); /* mode: 1 (half to even), 2 only in version 2 */
        if (p[5] == 2 && ml_key_is_zero(n->tensor_key[0]))
            in_range(p[0], 1, (1 << 24) - 1); /* float32 mode: M0·2^−t exact in float32 */
        want->dtype = ML_INT8;
        break;
    case ML_ADD:
        want_dtype(x, ML_INT8);
        want_dtype(ins[1], ML_INT8);
        if (!same_desc(x, ins[1]))
            ml_malformed("add inputs differ in shape");
        in_range(p[0], -128, 127);
        in_range(p[2], -128, 127);
        in_range(p[5], -128, 127);
        in_range(p[6], -128, 127);
        in_range(p[7], p[6], 127);
        in_range(p[1], 0, INT32_MAX_);
        in_range(p[3], 0, INT32_MAX_);
        in_range(p[4], 1, 62);
        break;
    case ML_RELU:
        want_dtype2(x, ML_INT8, ML_INT32);
        if (x->dtype == ML_INT8)
            in_range(p[0], -128, 127);
        break;
    case ML_MAXPOOL:
    case ML_AVGPOOL:
        want_dtype(x, ML_INT8);
        want_rank(x, 3);
        in_range(p[0], 1, (int32_t)x->dims[0]);
        in_range(p[1], 1, (int32_t)x->dims[1]);
        in_range(p[2], 1, INT32_MAX_);
        in_range(p[3], 1, INT32_MAX_);
        desc3(want, ML_INT8, (x->dims[0] - (uint32_t)p[0]) / (uint32_t)p[2] + 1,
              (x->dims[1] - (uint32_t)p[1]) / (uint32_t)p[3] + 1, x->dims[2]);
        break;
    case ML_RESHAPE:
        if (ml_elems(&n->out) != ml_elems(x))
            ml_malformed("a reshape that changes the element count");
        if (ml_is_rows(x->dtype) && n->out.dims[n->out.rank - 1] != x->dims[x->rank - 1])
            ml_malformed("a reshape that splits the rows of a row-scaled value");
        *want = n->out;
        want->dtype = x->dtype;
        break;
    case ML_ARGMAX:
        want_dtype2(x, ML_INT8, ML_INT32);
        want->dtype = ML_INT32;
        want->rank = 1;
        want->dims[0] = 1;
        want->dims[1] = want->dims[2] = want->dims[3] = 0;
        break;
    case ML_LUT:
        want_dtype(x, ML_INT8);
        sizes[0] = 256;
        break;
    case ML_SOFTMAX:
        want_dtype(x, ML_INT8);
        want_rank(x, 1);
        if (x->dims[0] > ML_MAX_SOFTMAX_N)
            ml_malformed("a softmax over more than 32767 elements");
        sizes[0] = 4 * 256;
        break;
    default:
        expected_v2(n, ins, want, sizes);
        break;
    }
}

void ml_check_node(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2],
                   struct ml_param_sizes *sizes)
{
    for (uint32_t j = 0; j < n->n_inputs; j++)
        if (n->input[j] > index)
            ml_malformed("an input that is not computed before the node");
    struct ml_desc want;
    uint64_t bytes[2];
    expected_output(n, ins, &want, bytes);
    if (!same_desc(&n->out, &want))
        ml_malformed("an output desc that the op's rule does not give");
    int has[2] = { !ml_key_is_zero(n->tensor_key[0]), !ml_key_is_zero(n->tensor_key[1]) };
    if (bytes[0] == 0) { /* the op takes no tensor */
        if (has[0] || has[1])
            ml_malformed("a tensor key on an op that takes no tensor");
    } else {
        if (!has[0])
            ml_malformed("a missing tensor key");
        if ((n->op == ML_REQUANTIZE || n->op == ML_LUT || n->op == ML_SOFTMAX || n->op > ML_OP_LAST_V1) &&
            has[1])
            ml_malformed("a second tensor key on a one-table op");
    }
    /* A parameter tensor has at most 2^24 bytes in version 1, 2^30 in version 2. */
    uint64_t limit = manifest_version == 1 ? ML_MAX_TENSOR_BYTES : ML_MAX_PARAM_BYTES_V2;
    for (int j = 0; j < 2; j++) {
        if (!has[j])
            bytes[j] = 0;
        if (bytes[j] > limit)
            ml_malformed("a parameter tensor larger than the version allows");
        sizes->bytes[j] = (uint32_t)bytes[j];
    }
}
