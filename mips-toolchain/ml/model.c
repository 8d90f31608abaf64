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

uint32_t ml_itemsize(uint32_t dtype)
{
    return dtype == ML_INT8 ? 1 : 4;
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
    return ml_elems(d) * ml_itemsize(d->dtype);
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
    if (d->dtype != ML_INT8 && d->dtype != ML_INT32)
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
 * 32-bit overflow). */
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
}

void ml_parse_header(const uint8_t b[ML_HEADER_SIZE], struct ml_header *h)
{
    if (b[0] != 'O' || b[1] != 'P' || b[2] != 'M' || b[3] != 'M')
        ml_malformed("bad manifest magic");
    if (u32_at(b + 4) != 1)
        ml_malformed("unknown manifest version");
    h->node_count = u32_at(b + 8);
    if (h->node_count < 1 || h->node_count > ML_MAX_NODES)
        ml_malformed("node count outside 1 … 4096");
    parse_desc(b + 12, b + 16, b + 20, &h->input);
    for (int i = 36; i < ML_HEADER_SIZE; i++)
        if (b[i])
            ml_malformed("non-zero reserved header byte");
    check_limits(&h->input);
}

void ml_parse_node(const uint8_t b[ML_NODE_SIZE], struct ml_node *n)
{
    n->op = u32_at(b);
    if (n->op < ML_DENSE || n->op > ML_OP_LAST)
        ml_malformed("unknown op code");
    n->n_inputs = u32_at(b + 4);
    if (n->n_inputs != (n->op == ML_ADD ? 2u : 1u))
        ml_malformed("wrong number of inputs for the op");
    n->input[0] = u32_at(b + 8);
    n->input[1] = u32_at(b + 12);
    if (n->n_inputs == 1 && n->input[1] != 0)
        ml_malformed("input[1] of a one-input op is not 0");
    parse_desc(b + 16, b + 20, b + 24, &n->out);
    check_limits(&n->out);
    static const uint8_t used[ML_OP_LAST + 1] = {
        [ML_DENSE] = 1, [ML_CONV2D] = 9, [ML_REQUANTIZE] = 5, [ML_ADD] = 8, [ML_RELU] = 1,
        [ML_MAXPOOL] = 4, [ML_AVGPOOL] = 4,
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
        in_range(p[0], 1, INT32_MAX_);
        in_range(p[1], 1, 62);
        in_range(p[2], -128, 127);
        in_range(p[3], -128, 127);
        in_range(p[4], p[3], 127);
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
        *want = n->out;
        want->dtype = x->dtype;
        break;
    case ML_ARGMAX:
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
        if ((n->op == ML_LUT || n->op == ML_SOFTMAX) && has[1])
            ml_malformed("a second tensor key on a one-table op");
    }
    for (int j = 0; j < 2; j++) {
        if (!has[j])
            bytes[j] = 0;
        if (bytes[j] > ML_MAX_TENSOR_BYTES)
            ml_malformed("a tensor of more than 2^24 bytes");
        sizes->bytes[j] = (uint32_t)bytes[j];
    }
}
