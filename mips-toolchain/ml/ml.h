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

/* Version 2 (ml-spec §1, §3, §10). */
#define ML_MAX_NODES_V2       (1u << 20)
#define ML_MAX_PARAM_BYTES_V2 (1u << 30) /* a parameter tensor of a version-2 manifest */
#define ML_ROW_HEADER         4          /* the int32 exponent of a row-scaled row    */
#define ML_BLOCK              32         /* weights per GGUF block                    */
#define ML_Q4_1_BYTES         20
#define ML_Q8_0_BYTES         34
#define ML_MAX_F              24
#define ML_MAX_QDENSE_K       (1u << 16)
#define ML_MAX_NORM_H         (1u << 16)
#define ML_MAX_ATTENTION_L    (1u << 16)
#define ML_MAX_HEAD_DIM       256
#define ML_MAX_ROPE_P         (1 << 20)
#define ML_MAX_OUT_FRAC       30
#define ML_MAX_NORM_EPS       (1 << 16)
#define ML_MAX_ATTENTION_MUL  ((1 << 23) - 1)
#define ML_MAX_SHIFT          62
#define ML_TABLE_ONE          (1 << 30)  /* 1.0 in the Q30 tables */
#define ML_EXP2_TABLE_LEN     1025
#define ML_SIGMOID_TABLE_LEN  2049
#define ML_ARGMAX_RECORD      3
#define ML_TRANSCRIPT_HEADER  2          /* a transcript starts with P and n (ml-spec §10.5) */

enum ml_dtype {
    ML_INT8 = 1,
    ML_INT32 = 2,
    ML_INT16 = 3, /* version 2 from here */
    ML_R16 = 4,   /* rows: int32 exponent, K int16 */
    ML_R8 = 5,    /* rows: int32 exponent, K int8  */
    ML_Q4_1 = 6,  /* GGUF blocks: parameter tensors only */
    ML_Q8_0 = 7,
};

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
    ML_OP_LAST_V1 = ML_SOFTMAX,
    ML_QDENSE = 12, /* version 2 from here (ml-spec §10) */
    ML_QDENSE_ARGMAX = 13,
    ML_ARGMAX_MERGE = 14,
    ML_EMBEDDING = 15,
    ML_RMSNORM = 16,
    ML_ROPE = 17,
    ML_ATTENTION = 18,
    ML_SWIGLU = 19,
    ML_QUANTIZE = 20,
    ML_ADD32 = 21,
    ML_CONCAT = 22,
    ML_SLICE = 23,
    ML_EMIT = 24,
    ML_OP_LAST = ML_EMIT,
};

struct ml_desc {
    uint32_t dtype;               /* enum ml_dtype                   */
    uint32_t rank;                /* 1 … 4                           */
    uint32_t dims[ML_MAX_RANK];   /* dims[0] outermost; 0 past rank  */
};

struct ml_header {
    uint32_t node_count;          /* N, 1 … 4096 (version 1) or 2^20 (version 2) */
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
/* Bytes of an element (of a row's values for r16/r8). */
uint32_t ml_itemsize(uint32_t dtype);
/* Bytes of a value: elems·itemsize, or rows·(4 + K·itemsize) for r16/r8. */
uint32_t ml_nbytes(const struct ml_desc *d);
int ml_is_rows(uint32_t dtype);
int ml_key_is_zero(const uint8_t key[ML_KEY_SIZE]);

/* Decode and check (magic, version, ranges, zero fields) the 64-byte header.
 * ml_parse_node and ml_check_node then follow this manifest's version (each
 * program reads one manifest). */
void ml_parse_header(const uint8_t bytes[ML_HEADER_SIZE], struct ml_header *h);
/* The version of the manifest whose header was parsed last (1 before any). */
uint32_t ml_version(void);
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

/* mode 0 rounds v = x·M0 over 2^t half up, mode 1 half to even, mode 2 as float32 (M0 < 2^24):
 * round_half_even(fl(fl(x)·M0·2^−t)) (ml-spec §4). */
void ml_requantize(const int32_t *x, uint32_t n, int32_t m0, int32_t t, int32_t zy, int32_t lo,
                   int32_t hi, int32_t mode, int8_t *y);
/* Per channel: columns 0 … nc − 1 of `rows` rows of `stride` elements (x and y at the first column),
 * column c with (M0, t) = (mt[2c], mt[2c + 1]), zy, lo, hi and the mode as ml_requantize's. */
void ml_requantize_channels(const int32_t *x, uint32_t rows, uint32_t stride, uint32_t nc,
                            const int32_t *mt, int32_t zy, int32_t lo, int32_t hi, int32_t mode, int8_t *y);
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

/* --- version-2 kernels (ops_llama.c): ml-spec §1, §10 --------------------------------
 *
 * Row-scaled values (r16, r8) are passed as their bytes: `rows` rows of
 * 4 + K·size bytes, an int32 exponent (at any alignment) then K values.
 * Intermediates are int64 and every bound of §10 keeps them below 2^62. */

/* The integer D = h·2^F of the fp16 scale with bits `h` (ml-spec §1); exits
 * ML_EXIT_MALFORMED for Inf, NaN, a subnormal, an inexact or a |D| ≥ 2^24. */
int32_t ml_fp16_scale(uint32_t h, int32_t F);

/* Rows row0 … row0 + M − 1 of a block matrix W [Mt, K] (dtype wtype, scales
 * at 2^−F), streamed from `w` through a weight buffer in whole blocks. */
struct ml_qmat {
    const struct ml_src *w;
    uint32_t wtype;               /* ML_Q4_1 or ML_Q8_0 */
    uint32_t K, row0, M;
    int32_t F;
};

/* qdense of x [T, K] (`xsize` 2: r16, 1: r8). R < 0: r16 output rows
 * quant(acc, e − F, 32767); else int32 at 2^−R. Scratch: acc 8·T·M bytes,
 * xsum 4·T·K/32 bytes, buf ML_WEIGHT_BUFFER. */
void ml_qdense(const uint8_t *x, uint32_t T, uint32_t xsize, const struct ml_qmat *qm, int32_t R,
               uint8_t *y, int64_t *acc, int32_t *xsum, uint8_t *buf);
/* Argmax records (row0 + m*, lo, hi) of the same accumulators, int32 [T, 3]
 * (m* the first of the largest). Scratch as ml_qdense. */
void ml_qdense_argmax(const uint8_t *x, uint32_t T, uint32_t xsize, const struct ml_qmat *qm, int32_t *y,
                      int64_t *acc, int32_t *xsum, uint8_t *buf);
void ml_argmax_merge(const int32_t *a, const int32_t *b, uint32_t T, int32_t *y);
/* Rows ids[t·stride] of W [V, H] (qm: K = H, row0 = 0, M = V) as int32 at 2^−R;
 * an id outside [0, V) gives zeros. */
void ml_embedding(const int32_t *ids, uint32_t T, uint32_t stride, const struct ml_qmat *qm, int32_t R,
                  int32_t *y, uint8_t *buf);
/* int32 x [T, H] → r16; g int16 [H] at 2^−Gf. Scratch: 8·H bytes. */
void ml_rmsnorm(const int32_t *x, uint32_t T, uint32_t H, const int16_t *g, int32_t Gf, int32_t eps,
                uint8_t *y, int64_t *scratch);
/* r16 x [T, W] at positions pos0 …; table C int32 [P, hd/2, 2] read one
 * position (4·hd bytes) at a time into buf, each value checked in
 * [−2^30, 2^30]. Scratch: 8·W bytes. */
void ml_rope(const uint8_t *x, uint32_t T, uint32_t W, uint32_t hd, uint32_t pos0, const struct ml_src *table,
             uint8_t *y, int64_t *scratch, uint8_t *buf);
struct ml_attn {
    uint32_t T, L, nh, nkv, hd;
    int32_t mul, sa;
};
/* q r16 [T, nh·hd], kv r16 [L, 2, nkv·hd] → r16 [T, nh·hd]; X the checked
 * exp2 table [1025]. Scratch: logits 8·L, o 8·nh·hd, weights, key exponents
 * and alignments 4·L each (bytes). */
void ml_attention(const struct ml_attn *at, const uint8_t *q, const uint8_t *kv, const int32_t *X, uint8_t *y,
                  int64_t *logits, int32_t *weights, int64_t *o, int32_t *ek, int32_t *align);
/* gate, up r16 [T, F] → r16; G the checked sigmoid table [2049]. Scratch: 8·F. */
void ml_swiglu(const uint8_t *gate, const uint8_t *up, uint32_t T, uint32_t F, const int32_t *G, uint8_t *y,
               int64_t *scratch);
/* int32 rows [rows, K] at 2^−fx → r16 (qmax 32767) or r8 (qmax 127). */
void ml_quantize_i32(const int32_t *x, uint32_t rows, uint32_t K, int32_t fx, uint32_t qmax, uint8_t *y);
/* r16 rows → r8 rows. */
void ml_quantize_r16(const uint8_t *x, uint32_t rows, uint32_t K, uint8_t *y);
void ml_add32(const int32_t *a, const int32_t *b, uint32_t n, int32_t *y);

/* --- one node (exec.c) -------------------------------------------------------------- */

/* Runs checked node `n` on its input values (`in[j]` the bytes of input[j],
 * descs `ins[j]`), reading its parameter tensors by key, into `out`
 * (ml_nbytes(&n->out) bytes). Checks what only the tensors show (their size,
 * the softmax table's range, the dense/conv2d overflow bound) before
 * computing, and exits ML_EXIT_MALFORMED when one fails. */
void ml_exec_node(uint32_t index, const struct ml_node *n, const struct ml_desc *ins[2],
                  const uint8_t *in[2], uint8_t *out);
/* The version-2 ops of ml_exec_node (exec_llama.c): `w` the node's parameter
 * tensor (its size checked), `buf` the weight buffer. */
void ml_exec_v2(const struct ml_node *n, const struct ml_desc *ins[2], const uint8_t *in[2], uint8_t *out,
                const struct ml_src *w, uint8_t *buf);

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
#define ML_STEPS_STATE_NODE 1600ull  /* per 64-byte state tree preimage read    */
#define ML_DENSE_MAC        6ull
#define ML_DENSE_ROW        64ull
#define ML_ROW_BOUND_WEIGHT 8ull
#define ML_ROW_BOUND_ROW    400ull
#define ML_CONV_MAC         10ull
#define ML_CONV_TAP         27ull
#define ML_CONV_ROW         21ull
#define ML_CONV_OUT         28ull
#define ML_CONV_FILTER      1400ull
#define ML_REQUANTIZE_ELEM  28ull
#define ML_REQUANTIZE_F32_ELEM 185ull /* mode 2, the float32 product (ml-spec §4) */
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
/* Version 2 (ml-spec §10.4), mirroring opml.ml.cost. */
#define ML_QDENSE_MAC_Q4_1    5ull
#define ML_QDENSE_MAC_Q8_0    4ull
#define ML_QDENSE_BLOCK       90ull
#define ML_QDENSE_X           12ull
#define ML_QDENSE_OUT_R16     60ull
#define ML_QDENSE_OUT_INT32   68ull
#define ML_QDENSE_OUT_ARGMAX  33ull
#define ML_QDENSE_ROW         240ull
#define ML_MERGE_ROW          38ull
#define ML_EMBED_ELEM         70ull
#define ML_EMBED_ROW          440ull
#define ML_RMSNORM_ELEM       120ull
#define ML_RMSNORM_ROW        1100ull
#define ML_ROPE_ELEM          58ull
#define ML_ROPE_ROW           500ull
#define ML_ATTENTION_MAC      6ull
#define ML_ATTENTION_SCORE    310ull
#define ML_ATTENTION_HEAD     215ull
#define ML_ATTENTION_OUT      102ull
#define ML_ATTENTION_ROW      940ull
#define ML_SWIGLU_ELEM        150ull
#define ML_QUANTIZE_ELEM      27ull
#define ML_QUANTIZE_ROW       84ull
#define ML_ROW_FIXED          64ull
#define ML_ADD32_ELEM         29ull
#define ML_COPY_BYTE          7ull
#define ML_CONCAT_BLOCK       32ull
#define ML_EMIT_FIXED         64ull

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
/* The 64-byte keccak-type preimage (oracle-spec §1.2) of withType(hash, 2):
 * the two children of a chunk-Merkle inner node whose hash is `hash`, or the
 * (root, size) of a chunk-Merkle key. Exits ML_EXIT_MALFORMED unless it is
 * 64 bytes. */
void ml_read_pair(const uint8_t hash[ML_KEY_SIZE], uint8_t pair[2 * ML_KEY_SIZE]);
/* S_k from S_{k−1} = `prev` and node k's output key, in O(log k) (ml-spec
 * §7.1): reads S_{k−1}'s (root, size), which must be 32·(k + 1), and the
 * inner nodes on the path to leaf k + 1, all as keccak-type preimages. */
void ml_next_state(const uint8_t prev[ML_KEY_SIZE], uint32_t k, const uint8_t new_key[ML_KEY_SIZE],
                   uint8_t next[ML_KEY_SIZE]);

#endif
