#ifndef OPML_ML_H
#define OPML_ML_H
/* The deterministic ML of docs/ml-spec.md in freestanding C: the manifest
 * (§3), the op rules (§4) and the integer kernels. Integer arithmetic only;
 * every kernel gives the bytes of opml.ml.ops for the same inputs.
 *
 * A model's tensors are read through an `ml_src`: bytes in memory (the
 * oracle-free kernel tests) or a preimage named by its key (the programs),
 * so each op has one C implementation whatever feeds it. */
#include <stdint.h>

/* Exit statuses of the node and whole-model programs (ml-spec §7.1). */
#define ML_EXIT_VALID     0 /* the claimed state equals the computed one */
#define ML_EXIT_INVALID   1 /* it does not                               */
#define ML_EXIT_MALFORMED 3 /* a local value, manifest or tensor fails §3–§4 */

#define ML_KEY_SIZE     32
#define ML_MAX_RANK     4
#define ML_MAX_NODES    4096
#define ML_N_PARAMS     14
#define ML_HEADER_SIZE  64
#define ML_NODE_SIZE    160
#define ML_MAX_TENSOR_BYTES (1u << 24)
#define ML_MAX_FILTER_ELEMS 4096 /* KH·KW·C of a conv2d filter: one weight buffer */
#define ML_MAX_SOFTMAX_N    32767
#define ML_SOFTMAX_E_MAX    (1 << 16)
#define ML_MAX_PRODUCT      (255 * 128) /* largest |(x − zx)·w| */
#define ML_WEIGHT_BUFFER    4096

enum ml_dtype { ML_INT8 = 1, ML_INT32 = 2 };

enum ml_op {
    ML_DENSE = 1,
    ML_CONV2D = 2,
    ML_REQUANTIZE = 3,
    ML_ADD = 4,
    ML_RELU = 5,
    ML_MAXPOOL = 6,
    ML_AVGPOOL = 7,
    ML_RESHAPE = 8,
    ML_ARGMAX = 9,
    ML_LUT = 10,
    ML_SOFTMAX = 11,
    ML_OP_LAST = ML_SOFTMAX,
};

struct ml_desc {
    uint32_t dtype;               /* enum ml_dtype                   */
    uint32_t rank;                /* 1 … 4                           */
    uint32_t dims[ML_MAX_RANK];   /* dims[0] outermost; 0 past rank  */
};

struct ml_header {
    uint32_t node_count;          /* N, 1 … 4096 */
    struct ml_desc input;         /* value 0     */
};

struct ml_node {
    uint32_t op;
    uint32_t n_inputs;
    uint32_t input[2];            /* value numbers, input[1] = 0 for one-input ops */
    struct ml_desc out;
    int32_t p[ML_N_PARAMS];       /* op params; unused ones are 0 */
    uint8_t tensor_key[2][ML_KEY_SIZE]; /* all zero: no tensor */
};

/* --- manifest and op rules (model.c) ---------------------------------------------- */

/* Prints "ml: malformed: <what>" to stderr and exits ML_EXIT_MALFORMED. */
void ml_malformed(const char *what) __attribute__((noreturn));

uint32_t ml_elems(const struct ml_desc *d);
uint32_t ml_itemsize(uint32_t dtype);
uint32_t ml_nbytes(const struct ml_desc *d);
int ml_key_is_zero(const uint8_t key[ML_KEY_SIZE]);

/* Decode and check (magic, version, ranges, zero fields) the 64-byte header. */
void ml_parse_header(const uint8_t bytes[ML_HEADER_SIZE], struct ml_header *h);
/* Decode one 160-byte record and check what it says alone (op, input count,
 * output dtype, rank and size limits, zero fields); the op's rule is
 * ml_check_node. */
void ml_parse_node(const uint8_t bytes[ML_NODE_SIZE], struct ml_node *n);

/* The parameter tensors a checked node reads (size 0: none). */
struct ml_param_sizes {
    uint32_t bytes[2];
};

/* Checks node `index` against the descs of its inputs (`ins[j]` for
 * input[j]): input references, the op's rule and param ranges, its output
 * desc, which tensor keys are present, the tensors' size limits. Fills the
 * byte sizes the op's parameter tensors must have. */
void ml_check_node(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2],
                   struct ml_param_sizes *sizes);

/* --- tensor sources (source.c) ---------------------------------------------------- */

struct ml_src {
    const uint8_t *mem;           /* the bytes, or 0 to read `key` through the oracle */
    const uint8_t *key;
    uint32_t size;                /* bytes                                  */
};

/* A source for the preimage of `key`; its size is the preimage length. */
void ml_src_key(struct ml_src *s, const uint8_t key[ML_KEY_SIZE]);
void ml_src_mem(struct ml_src *s, const void *mem, uint32_t size);
/* Reads bytes [offset, offset + count) (all inside the source) into `buf`. */
void ml_src_read(const struct ml_src *s, uint32_t offset, void *buf, uint32_t count);

/* --- kernels (ops.c): ml-spec §4, shapes as in the spec ----------------------------- */

/* y[m] += Σ_k (x[k] − zx)·W[m, k] for W int8 [M, K] streamed from `w` through
 * `buf` (ML_WEIGHT_BUFFER bytes). The caller puts the bias (or 0) in y. */
void ml_dense(const int8_t *x, uint32_t K, uint32_t M, int32_t zx, const struct ml_src *w,
              int32_t *y, uint8_t *buf);

struct ml_conv {
    uint32_t H, W, C, OH, OW, OC, KH, KW, sh, sw, pt, pl;
    int32_t zx;
};
/* y[oh, ow, oc] = bias[oc] + Σ (x − zx)·W[oc, i, j, c] for W int8 [OC, KH, KW, C]:
 * filter oc is read into `buf` whole; positions outside x contribute 0. */
void ml_conv2d(const int8_t *x, const struct ml_conv *cv, const struct ml_src *w,
               const struct ml_src *bias, int32_t *y, uint8_t *buf);

void ml_requantize(const int32_t *x, uint32_t n, int32_t m0, int32_t t, int32_t zy, int32_t lo,
                   int32_t hi, int8_t *y);
void ml_add(const int8_t *a, const int8_t *b, uint32_t n, const int32_t p[8], int8_t *y);
void ml_relu_i8(const int8_t *x, uint32_t n, int32_t z, int8_t *y);
void ml_relu_i32(const int32_t *x, uint32_t n, int32_t z, int32_t *y);

struct ml_pool {
    uint32_t H, W, C, OH, OW, KH, KW, sh, sw;
};
void ml_maxpool(const int8_t *x, const struct ml_pool *pl, int8_t *y);
void ml_avgpool(const int8_t *x, const struct ml_pool *pl, int8_t *y);
int32_t ml_argmax_i8(const int8_t *x, uint32_t n);
int32_t ml_argmax_i32(const int32_t *x, uint32_t n);
void ml_lut(const int8_t *x, uint32_t n, const int8_t table[256], int8_t *y);
void ml_softmax(const int8_t *x, uint32_t n, const int32_t table[256], int8_t *y);

/* --- one node (exec.c) -------------------------------------------------------------- */

/* Runs checked node `n` on its input values (`in[j]` the bytes of input[j],
 * descs `ins[j]`), reading its parameter tensors by key, into `out`
 * (ml_nbytes(&n->out) bytes). Checks what only the tensors show (their size,
 * the softmax table's range, the dense/conv2d overflow bound) before
 * computing, and exits ML_EXIT_MALFORMED when one fails. */
void ml_exec_node(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2],
                  const uint8_t *in[2], uint8_t *out);

/* A bump allocator over brk: 8-byte aligned, never freed (contents are not
 * cleared). Exits ML_EXIT_MALFORMED when the break cannot grow. */
void *ml_alloc(uint32_t size);

/* --- the cost bound (cost.c): ml-spec §9, mirroring opml.ml.cost --------------------- */

#define ML_MAX_NODE_STEPS  (1ull << 31) /* the cap on a node's bound: split a node above it */
#define ML_MAX_MODEL_STEPS (1ull << 44) /* the cap on the whole-model program's bound      */

/* Steps per unit: the measured cost ×1.25, rounded up (ml-spec §9.2). */
#define ML_STEPS_NODE_BASE  20000ull /* node program, fixed                     */
#define ML_STEPS_MODEL_BASE 10000ull /* whole-model program, fixed              */
#define ML_STEPS_MODEL_NODE 10000ull /* whole-model program, per node           */
#define ML_STEPS_READ_BYTE  4ull     /* per byte read through the oracle        */
#define ML_STEPS_KECCAK     36000ull /* per keccak permutation of a key         */
#define ML_STEPS_HASH_BYTE  14ull    /* per byte passed to a chunk-Merkle key   */
#define ML_DENSE_MAC        6ull
#define ML_DENSE_ROW        64ull
#define ML_CONV_MAC         10ull
#define ML_CONV_TAP         27ull
#define ML_CONV_ROW         21ull
#define ML_CONV_OUT         28ull
#define ML_CONV_FILTER      1400ull
#define ML_REQUANTIZE_ELEM  28ull
#define ML_ADD_ELEM         50ull
#define ML_RELU_ELEM        7ull
#define ML_MAXPOOL_WIN      8ull
#define ML_MAXPOOL_ROW      12ull
#define ML_MAXPOOL_OUT      35ull
#define ML_AVGPOOL_WIN      13ull
#define ML_AVGPOOL_ROW      12ull
#define ML_AVGPOOL_OUT      220ull
#define ML_RESHAPE_BYTE     6ull
#define ML_ARGMAX_ELEM      8ull
#define ML_LUT_ELEM         8ull
#define ML_SOFTMAX_ELEM     46ull

/* The bound on the chunk-Merkle key of `nbytes` bytes. */
uint64_t ml_hash_steps(uint64_t nbytes);
/* What checked node `n` costs in either program: its parameter tensors read,
 * its kernel, its output's key (ins[j]: the desc of input[j]). */
uint64_t ml_node_work(const struct ml_node *n, const struct ml_desc *ins[2]);
/* The node program's bound on checked node `index`. */
uint64_t ml_node_bound(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2]);
/* Exits ML_EXIT_MALFORMED when ml_node_bound is above ML_MAX_NODE_STEPS. */
void ml_check_node_cost(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2]);
/* The whole-model program's bound without its nodes: the fixed part, reading
 * the input, the key of the N + 1 value keys. */
uint64_t ml_model_fixed_bound(const struct ml_header *h);

/* --- what both programs share (program.c) -------------------------------------------- */

/* Local value `ident` (oracle-spec §1.1), which must have exactly `size` bytes. */
void ml_local(uint32_t ident, void *out, uint32_t size);

struct ml_manifest {
    struct ml_src src;            /* the manifest's preimage */
    struct ml_header header;
};
/* Opens the manifest whose key is the model commitment; checks its header and
 * that it is exactly 64 + 160·N bytes. */
void ml_open_manifest(struct ml_manifest *m, const uint8_t commitment[ML_KEY_SIZE]);
/* Reads and parses node record `index` (< N). */
void ml_read_node(const struct ml_manifest *m, uint32_t index, struct ml_node *n);
/* The desc of value `v` (0: the input, else node v − 1's output). */
void ml_value_desc(const struct ml_manifest *m, uint32_t v, struct ml_desc *d);
/* The bytes of a value by key, into fresh memory; the preimage must have
 * exactly ml_nbytes(d) bytes. */
uint8_t *ml_read_value(const uint8_t key[ML_KEY_SIZE], const struct ml_desc *d);
/* Prints "key 0x<64 hex digits>\n" to stdout. */
void ml_print_key(const uint8_t key[ML_KEY_SIZE]);

#endif
