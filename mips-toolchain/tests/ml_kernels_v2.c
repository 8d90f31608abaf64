/* ml_kernels_v2: the version-2 kernels of ml/ops_llama.c (docs/ml-spec.md
 * §1, §10) on embedded data, without the oracle, so that qemu-mipsel is a
 * reference for them too.
 *
 * Every case reseeds xorshift32 and draws its inputs in a fixed order;
 * tests/ml/test_ml_kernels_v2.py draws the same numbers in Python, rebuilds
 * the inputs, computes them with numpy (opml.ml.ops) and with a pure-Python
 * reference written from the spec, and compares them with what this program
 * prints under qemu and in the VM: one line per case, "<case> <output bytes
 * as hex>". tests/expected/ml_kernels_v2.out pins the lines. */
#include "kernel_io.h"
#include "ml.h"
#include "rt.h"

#define I32_MIN (-2147483647 - 1)
#define I32_MAX 2147483647

/* --- inputs ------------------------------------------------------------------------- */

/* lo + next % (hi − lo + 1); the next number itself for the whole int32 range. */
static int32_t rand_in(int32_t lo, int32_t hi)
{
    uint32_t span = (uint32_t)hi - (uint32_t)lo + 1u;
    return span ? (int32_t)((uint32_t)lo + next_u32() % span) : (int32_t)next_u32();
}

static uint8_t xa[2 * (4 + 2 * 65536)] __attribute__((aligned(8)));
static uint8_t xb[4096] __attribute__((aligned(8)));
static uint8_t wmem[2048 * 34 + 64] __attribute__((aligned(8)));
static uint8_t y[16384] __attribute__((aligned(8)));
static int64_t scratch[8192];
static int32_t xsum[2 * 2048];
static int32_t table[2049];
static uint8_t buf[ML_WEIGHT_BUFFER] __attribute__((aligned(32)));

static void put32(uint8_t *p, int32_t v)
{
    memcpy(p, &v, 4);
}

/* T rows of r16 (size 2) or r8 (size 1): per row an exponent in [elo, ehi],
 * then K random values (the whole int16 or int8 range). */
static void rows(uint8_t *p, uint32_t T, uint32_t K, uint32_t size, int32_t elo, int32_t ehi)
{
    for (uint32_t t = 0; t < T; t++) {
        put32(p, rand_in(elo, ehi));
        p += 4;
        for (uint32_t i = 0; i < K; i++, p += size) {
            uint32_t r = next_u32();
            if (size == 2)
                *(int16_t *)p = (int16_t)(r >> 16);
            else
                *(int8_t *)p = (int8_t)(r >> 24);
        }
    }
}

/* An fp16 scale with exponent in [elo, ehi], random sign and fraction (the
 * cases keep E − 25 + F in 0 … 13: every such scale is exact and < 2^24). */
static uint32_t scale_bits(int32_t elo, int32_t ehi)
{
    uint32_t r = next_u32();
    return (r >> 31) << 15 | (uint32_t)rand_in(elo, ehi) << 10 | (r & 1023);
}

/* `n` blocks of wtype: scales with exponents in [elo, ehi] (one in 8 zero), then random
 * nibbles or int8. */
static void blocks(uint8_t *p, uint32_t wtype, uint32_t n, int32_t elo, int32_t ehi)
{
    for (uint32_t b = 0; b < n; b++) {
        int nscales = wtype == ML_Q4_1 ? 2 : 1;
        for (int s = 0; s < nscales; s++) {
            uint32_t h = (next_u32() & 7) == 0 ? 0 : scale_bits(elo, ehi);
            p[0] = (uint8_t)h;
            p[1] = (uint8_t)(h >> 8);
            p += 2;
        }
        uint32_t nq = wtype == ML_Q4_1 ? 16 : 32;
        for (uint32_t j = 0; j < nq; j++)
            *p++ = (uint8_t)(next_u32() >> 24);
    }
}

static uint32_t row_bytes(uint32_t K, uint32_t size)
{
    return 4 + K * size;
}

static uint32_t block_bytes(uint32_t wtype)
{
    return wtype == ML_Q4_1 ? ML_Q4_1_BYTES : ML_Q8_0_BYTES;
}

/* --- cases -------------------------------------------------------------------------- */

static void case_fp16(void)
{
    static const uint32_t bits[][2] = {
        { 0x0000, 0 },  { 0x8000, 5 },  { 0x0400, 24 }, { 0x07FF, 24 }, { 0x3C00, 0 },
        { 0xBC00, 0 },  { 0x3C01, 10 }, { 0x7BFF, 0 },  { 0x7BFF, 8 },  { 0xFBFF, 8 },
        { 0x4000, 0 },  { 0x3555, 24 }, { 0x1400, 24 }, { 0x6002, 0 },  { 0x5800, 2 },
    };
    int32_t d[sizeof bits / sizeof bits[0]];
    for (uint32_t i = 0; i < sizeof bits / sizeof bits[0]; i++)
        d[i] = ml_fp16_scale(bits[i][0], (int32_t)bits[i][1]);
    emit("fp16", d, sizeof d);
}

/* qdense of T rows of K (xsize) against rows row0 … row0 + M − 1 of Mt rows. */
static void qdense_case(const char *name, uint32_t s, uint32_t wtype, uint32_t xsize, uint32_t T, uint32_t K,
                        uint32_t Mt, uint32_t row0, uint32_t M, int32_t F, int32_t R, int32_t elo, int32_t ehi,
                        int32_t slo, int32_t shi)
{
    seed(s);
    rows(xa, T, K, xsize, elo, ehi);
    blocks(wmem, wtype, Mt * (K / 32), slo, shi);
    struct ml_src w;
    ml_src_mem(&w, wmem, Mt * (K / 32) * block_bytes(wtype));
    struct ml_qmat qm = { &w, wtype, K, row0, M, F };
    ml_qdense(xa, T, xsize, &qm, R, y, scratch, xsum, buf);
    emit(name, y, R < 0 ? T * row_bytes(M, 2) : 4 * T * M);
}

static void argmax_case(const char *name, uint32_t s, uint32_t wtype, uint32_t xsize, uint32_t T, uint32_t K,
                        uint32_t Mt, uint32_t row0, uint32_t M, int32_t F, int32_t slo, int32_t shi)
{
    seed(s);
    rows(xa, T, K, xsize, -20, 20);
    memset(xa + row_bytes(K, xsize), 0, row_bytes(K, xsize)); /* row 1 all zero: every row ties */
    blocks(wmem, wtype, Mt * (K / 32), slo, shi);
    uint32_t rb = (K / 32) * block_bytes(wtype); /* row row0 + 3 = row row0 + 1: a tie on any x */
    memcpy(wmem + (row0 + 3) * rb, wmem + (row0 + 1) * rb, rb);
    struct ml_src w;
    ml_src_mem(&w, wmem, Mt * rb);
    struct ml_qmat qm = { &w, wtype, K, row0, M, F };
    ml_qdense_argmax(xa, T, xsize, &qm, (int32_t *)y, scratch, xsum, buf);
    emit(name, y, 12 * T);
}

/* At the largest scales, |acc| reaches 2^62 − 2^51 at K = 2^16 (q8_0, every
 * product −128·−32768): the bound of §10.2. The other extremes at K = 4096. */
static void extreme_cases(void)
{
    static const uint32_t Ks[] = { 65536, 4096 };
    for (int big = 0; big < 2; big++) {
        uint32_t K = Ks[1 - big], nb = K / 32, xr = row_bytes(K, 2);
        put32(xa, -40);
        put32(xa + xr, 2147483647);
        for (uint32_t i = 0; i < K; i++) {
            ((int16_t *)(xa + 4))[i] = 32767;
            ((int16_t *)(xa + xr + 4))[i] = -32768;
        }
        const uint8_t *x = big ? xa + xr : xa; /* K = 2^16: one row */
        uint32_t T = big ? 1 : 2;
        for (uint32_t b = 0; b < nb; b++) { /* q4_1: d = m = 2047·2^13 at F = 8, every q = 15 */
            uint8_t *p = wmem + 20 * b;
            p[0] = 0xFF, p[1] = 0x7B, p[2] = 0xFF, p[3] = b & 1 ? 0xFB : 0x7B;
            memset(p + 4, 0xFF, 16);
        }
        struct ml_src w;
        ml_src_mem(&w, wmem, nb * 20);
        struct ml_qmat qm = { &w, ML_Q4_1, K, 0, 1, 8 };
        if (!big) {
            ml_qdense(x, T, 2, &qm, -1, y, scratch, xsum, buf);
            emit("qdense_q4_extreme", y, T * row_bytes(1, 2));
            ml_qdense(x, T, 2, &qm, 0, y, scratch, xsum, buf);
            emit("qdense_q4_extreme_i32", y, 4 * T);
            ml_qdense_argmax(x, T, 2, &qm, (int32_t *)y, scratch, xsum, buf);
            emit("argmax_q4_extreme", y, 12 * T);
        }
        for (uint32_t b = 0; b < nb; b++) { /* q8_0: d = −2047·2^13, every q = −128 */
            uint8_t *p = wmem + 34 * b;
            p[0] = 0xFF, p[1] = 0xFB;
            memset(p + 2, 0x80, 32);
        }
        ml_src_mem(&w, wmem, nb * 34);
        qm.wtype = ML_Q8_0;
        ml_qdense(x, T, 2, &qm, -1, y, scratch, xsum, buf);
        emit(big ? "qdense_q8_bound" : "qdense_q8_extreme", y, T * row_bytes(1, 2));
        if (!big) {
            ml_qdense(x, T, 2, &qm, 30, y, scratch, xsum, buf);
            emit("qdense_q8_extreme_i32", y, 4 * T);
        }
        if (!big) {
            ml_qdense_argmax(x, T, 2, &qm, (int32_t *)y, scratch, xsum, buf);
            emit("argmax_q8_extreme", y, 12 * T);
        }
    }
}

static void case_merge(void)
{
    static const int32_t a[] = {
        5, 0, 0,  7, 100, 0,  7, -1, 0,  2, 0, -1,  9, I32_MIN, 3,  4, I32_MAX, 3,  1, 1, 1,
    };
    static const int32_t b[] = {
        3, 0, 0,  7, 100, 0,  2, 0, 1,  1, -1, -1, 9, I32_MAX, 3,  0, I32_MIN, 3,  -5, 1, 1,
    };
    ml_argmax_merge(a, b, 7, (int32_t *)y);
    emit("argmax_merge", y, 7 * 12);
    ml_argmax_merge(b, a, 7, (int32_t *)y);
    emit("argmax_merge_swapped", y, 7 * 12);
}

static void embedding_case(const char *name, uint32_t s, uint32_t wtype, uint32_t V, uint32_t H, int32_t F,
                           int32_t R, int32_t slo, int32_t shi, uint32_t stride)
{
    static const int32_t ids[] = { 3, -1, 0, 10, 9, I32_MIN, 7, 1 };
    int32_t x[3 * 8];
    uint32_t T = sizeof ids / sizeof ids[0];
    seed(s);
    for (uint32_t t = 0; t < T; t++) {
        x[t * stride] = ids[t] == 10 ? (int32_t)V : ids[t] == 9 ? (int32_t)V - 1 : ids[t];
        if (stride == 3) {
            x[t * 3 + 1] = (int32_t)next_u32();
            x[t * 3 + 2] = (int32_t)next_u32();
        }
    }
    blocks(wmem, wtype, V * (H / 32), slo, shi);
    struct ml_src w;
    ml_src_mem(&w, wmem, V * (H / 32) * block_bytes(wtype));
    struct ml_qmat qm = { &w, wtype, H, 0, V, F };
    ml_embedding(x, T, stride, &qm, R, (int32_t *)y, buf);
    emit(name, y, 4 * T * H);
}

static void case_rmsnorm(void)
{
    uint32_t T = 6, H = 48;
    int32_t *x = (int32_t *)xa;
    int16_t *g = (int16_t *)xb;
    seed(0x1234567u);
    for (uint32_t i = 0; i < T * H; i++)
        x[i] = (int32_t)next_u32();
    for (uint32_t i = 0; i < H; i++) {
        x[H + i] = rand_in(-3, 3);     /* row 1: tiny, sh = −21 … −22 */
        x[2 * H + i] = 0;              /* row 2: zero */
        x[4 * H + i] = rand_in(-5000, 5000) * 4096; /* row 4: a residual stream */
        x[5 * H + i] = (int32_t)next_u32() >> 20;
        g[i] = (int16_t)(next_u32() >> 16);
    }
    x[3 * H] = I32_MIN;
    x[3 * H + 1] = I32_MAX;
    x[H + 5] = 1;
    g[0] = -32768;
    g[1] = 32767;
    ml_rmsnorm(x, T, H, g, 12, 168, y, scratch);
    emit("rmsnorm", y, T * row_bytes(H, 2));
    ml_rmsnorm(x, T, H, g, 0, 65536, y, scratch);
    emit("rmsnorm_eps", y, T * row_bytes(H, 2));
    ml_rmsnorm(x + 3 * H, 1, 1, g + 1, 30, 0, y, scratch);
    emit("rmsnorm_h1", y, row_bytes(1, 2));
    ml_rmsnorm(x + H, 1, 1, g, 30, 65536, y, scratch);
    emit("rmsnorm_h1_eps", y, row_bytes(1, 2));
}

static void rope_case(const char *name, uint32_t s, uint32_t T, uint32_t W, uint32_t hd, uint32_t pos0,
                      uint32_t P, int extreme)
{
    seed(s);
    rows(xa, T, W, 2, -40, 40);
    int32_t *C = (int32_t *)wmem;
    for (uint32_t i = 0; i < P * hd; i++)
        C[i] = rand_in(-ML_TABLE_ONE, ML_TABLE_ONE);
    if (extreme) {
        C[pos0 * hd] = ML_TABLE_ONE;
        C[pos0 * hd + 1] = -ML_TABLE_ONE;
        for (uint32_t i = 0; i < W; i++)
            ((int16_t *)(xa + 4))[i] = i & 1 ? 32767 : -32768;
        put32(xa, I32_MAX);
    }
    struct ml_src c;
    ml_src_mem(&c, C, 4 * P * hd);
    ml_rope(xa, T, W, hd, pos0, &c, y, scratch, buf);
    emit(name, y, T * row_bytes(W, 2));
}

/* An exp2 table from an integer recurrence: X[0] = 2^30, X[i+1] = X[i]·c/2^30
 * rounded, c = round(2^30·2^(−1/1024)). */
static void exp2_table(void)
{
    table[0] = ML_TABLE_ONE;
    for (int i = 0; i < 1024; i++)
        table[i + 1] = (int32_t)(((int64_t)table[i] * 1073015252 + (1 << 29)) >> 30);
}

static void attention_case(const char *name, uint32_t s, uint32_t T, uint32_t L, uint32_t nh, uint32_t nkv,
                           uint32_t hd, int32_t mul, int32_t sa, int32_t elo, int32_t ehi, int extreme)
{
    seed(s);
    uint32_t W = nh * hd, Wkv = nkv * hd;
    rows(xa, T, W, 2, elo, ehi);
    rows(xb, 2 * L, Wkv, 2, elo, ehi);
    if (extreme) { /* exponents at both ends of int32, values at ±32768 */
        put32(xa, I32_MIN);
        put32(xb + row_bytes(Wkv, 2), I32_MAX);
        put32(xb + 3 * row_bytes(Wkv, 2), I32_MIN);
        put32(xb + 2 * row_bytes(Wkv, 2), I32_MIN);
        for (uint32_t i = 0; i < Wkv; i++)
            ((int16_t *)(xb + 4))[i] = -32768;
    }
    exp2_table();
    struct ml_attn at = { T, L, nh, nkv, hd, mul, sa };
    int64_t *o = scratch + L;
    int32_t *pw = (int32_t *)(o + W);
    ml_attention(&at, xa, xb, table, y, scratch, pw, o, pw + L, pw + 2 * L);
    emit(name, y, T * row_bytes(W, 2));
}

static void case_swiglu(void)
{
    uint32_t T = 4, F = 40, row = row_bytes(F, 2);
    seed(0xabcdef1u);
    rows(xa, T, F, 2, -20, -8);
    rows(xb, T, F, 2, -20, 20);
    put32(xa + 2 * row, I32_MAX);
    put32(xa + 3 * row, I32_MIN);
    ((int16_t *)(xa + 4))[0] = -32768;
    ((int16_t *)(xb + 4))[0] = -32768;
    for (int i = 0; i < 2049; i++) { /* any table in 0 … 2^30 is valid: a jittered ramp */
        int32_t v = (i << 19) - (int32_t)(next_u32() & 0xFFFF);
        table[i] = v < 0 ? 0 : v;
    }
    ml_swiglu(xa, xb, T, F, table, y, scratch);
    emit("swiglu", y, T * row);
}

static void case_quantize(void)
{
    uint32_t rows_ = 4, K = 20;
    int32_t *x = (int32_t *)xa;
    seed(0x5eed5u);
    for (uint32_t i = 0; i < rows_ * K; i++)
        x[i] = (int32_t)next_u32() >> (i / K * 8);
    x[0] = I32_MIN;
    x[K + 3] = I32_MAX;
    for (uint32_t i = 0; i < K; i++)
        x[3 * K + i] = rand_in(-127, 127); /* row 3: fits r8 as it is */
    ml_quantize_i32(x, rows_, K, 12, 32767, y);
    emit("quantize_r16", y, rows_ * row_bytes(K, 2));
    ml_quantize_i32(x, rows_, K, -62, 127, y);
    emit("quantize_r8", y, rows_ * row_bytes(K, 1));
    ml_quantize_i32(x, rows_, K, 62, 127, y);
    emit("quantize_r8_fx62", y, rows_ * row_bytes(K, 1));
    ml_quantize_i32(x + K, 1, 1, 0, 32767, y);
    emit("quantize_k1", y, row_bytes(1, 2));
    rows(xb, 3, K, 2, -50, 50);
    put32(xb + row_bytes(K, 2), I32_MAX);
    put32(xb + 2 * row_bytes(K, 2), I32_MIN);
    ((int16_t *)(xb + 4))[0] = -32768;
    ml_quantize_r16(xb, 3, K, y);
    emit("quantize_r16_r8", y, 3 * row_bytes(K, 1));
}

static void case_add32(void)
{
    int32_t *a = (int32_t *)xa, *b = (int32_t *)xb;
    seed(0xadd32u);
    for (int i = 0; i < 30; i++) {
        a[i] = (int32_t)next_u32();
        b[i] = (int32_t)next_u32();
    }
    a[0] = b[0] = I32_MAX;
    a[1] = b[1] = I32_MIN;
    a[2] = I32_MAX, b[2] = I32_MIN;
    ml_add32(a, b, 30, (int32_t *)y);
    emit("add32", y, 120);
}

/* --- the cost bound of version-2 nodes (ml/cost.c, ml-spec §10.4) -------------------- */

static struct ml_desc desc(uint32_t dtype, uint32_t rank, uint32_t d0, uint32_t d1, uint32_t d2)
{
    struct ml_desc d = { dtype, rank, { d0, d1, d2, 0 } };
    return d;
}

/* "<case> <node bound> <node work>" of node `index` (op, output, params p[0..]) on inputs x, b. */
static void cost_case(const char *name, uint32_t index, uint32_t op, struct ml_desc out, const int32_t *p,
                      int np, struct ml_desc x, const struct ml_desc *b)
{
    struct ml_node n;
    memset(&n, 0, sizeof n);
    n.op = op;
    n.n_inputs = b ? 2 : 1;
    n.out = out;
    for (int j = 0; j < np; j++)
        n.p[j] = p[j];
    n.tensor_key[0][0] = 3;
    const struct ml_desc *ins[2] = { &x, b };
    print_str(name);
    print_char(' ');
    print_hex64(ml_node_bound(index, &n, ins));
    print_char(' ');
    print_hex64(ml_node_work(&n, ins));
    print_nl();
}

static void cost_cases(void)
{
    struct ml_desc kv = desc(ML_R16, 3, 700, 2, 192), gate = desc(ML_R16, 2, 2, 1536, 0);
    struct ml_desc a32 = desc(ML_INT32, 1, 1000, 0, 0), rec = desc(ML_INT32, 2, 5, 3, 0);
    struct ml_desc one = desc(ML_R16, 3, 1, 2, 192), i8 = desc(ML_INT8, 3, 3, 4, 5);
    cost_case("cost_qdense_q4_r16", 17, ML_QDENSE, desc(ML_R16, 2, 7, 1536, 0), (const int32_t[]){ 6, 18, 1536 }, 3,
              desc(ML_R16, 2, 7, 576, 0), 0);
    cost_case("cost_qdense_q8_i32", 4095, ML_QDENSE, desc(ML_INT32, 2, 1, 3000, 0),
              (const int32_t[]){ 7, 21, 5000, 100, 12 }, 5, desc(ML_R8, 2, 1, 65536, 0), 0);
    cost_case("cost_qdense_argmax", 1u << 20, ML_QDENSE_ARGMAX, desc(ML_INT32, 2, 1, 3, 0),
              (const int32_t[]){ 7, 21, 49152, 0, 49152 }, 5, desc(ML_R16, 2, 1, 576, 0), 0);
    cost_case("cost_qdense_argmax_q4", 3, ML_QDENSE_ARGMAX, desc(ML_INT32, 2, 3, 3, 0),
              (const int32_t[]){ 6, 18, 9000, 1000, 8000 }, 5, desc(ML_R8, 2, 3, 2048, 0), 0);
    cost_case("cost_argmax_merge", 9, ML_ARGMAX_MERGE, rec, 0, 0, rec, &rec);
    cost_case("cost_embedding", 0, ML_EMBEDDING, desc(ML_INT32, 2, 9, 576, 0), (const int32_t[]){ 7, 21, 49152, 12 },
              4, desc(ML_INT32, 1, 9, 0, 0), 0);
    cost_case("cost_embedding_q4_records", 1, ML_EMBEDDING, desc(ML_INT32, 2, 5, 64, 0),
              (const int32_t[]){ 6, 24, 100, 0 }, 4, rec, 0);
    cost_case("cost_rmsnorm", 2, ML_RMSNORM, desc(ML_R16, 2, 3, 576, 0), (const int32_t[]){ 12, 168 }, 2,
              desc(ML_INT32, 2, 3, 576, 0), 0);
    cost_case("cost_rope", 5, ML_ROPE, desc(ML_R16, 2, 5, 576, 0), (const int32_t[]){ 64, 10, 100 }, 3,
              desc(ML_R16, 2, 5, 576, 0), 0);
    cost_case("cost_attention", 6, ML_ATTENTION, desc(ML_R16, 2, 3, 576, 0), (const int32_t[]){ 64, 6051102, 9 },
              3, desc(ML_R16, 2, 3, 576, 0), &kv);
    cost_case("cost_swiglu", 7, ML_SWIGLU, gate, 0, 0, gate, &gate);
    cost_case("cost_quantize_i32_r8", 8, ML_QUANTIZE, desc(ML_R8, 3, 4, 10, 33), (const int32_t[]){ -7 }, 1,
              desc(ML_INT32, 3, 4, 10, 33), 0);
    cost_case("cost_quantize_r16_r8", 8, ML_QUANTIZE, desc(ML_R8, 2, 3, 100, 0), 0, 0, desc(ML_R16, 2, 3, 100, 0),
              0);
    cost_case("cost_add32", 10, ML_ADD32, a32, 0, 0, a32, &a32);
    cost_case("cost_concat_kv", 11, ML_CONCAT, desc(ML_R16, 3, 701, 2, 192), (const int32_t[]){ 0 }, 1, kv, &one);
    cost_case("cost_concat_i8_axis2", 12, ML_CONCAT, desc(ML_INT8, 3, 3, 4, 10), (const int32_t[]){ 2 }, 1, i8, &i8);
    cost_case("cost_slice", 13, ML_SLICE, desc(ML_INT32, 2, 1, 576, 0), (const int32_t[]){ 8 }, 1,
              desc(ML_INT32, 2, 9, 576, 0), 0);
    cost_case("cost_reshape_r16", 14, ML_RESHAPE, desc(ML_R16, 2, 3, 192, 0), 0, 0, desc(ML_R16, 3, 3, 1, 192), 0);
}

int main(void)
{
    case_fp16();
    /* qdense: name, seed, wtype, xsize, T, K, Mt, row0, M, F, R (−1: r16), x exponents, scale exponents. */
    qdense_case("qdense_q4_r16_min", 1, ML_Q4_1, 2, 1, 32, 1, 0, 1, 10, -1, -30, 30, 15, 25);
    qdense_case("qdense_q4_r16", 2, ML_Q4_1, 2, 3, 160, 53, 3, 50, 18, -1, -100, 100, 7, 20);
    qdense_case("qdense_q4_r8_i32", 3, ML_Q4_1, 1, 2, 64, 7, 0, 7, 24, 12, -18, -6, 1, 13);
    qdense_case("qdense_q8_r16_i32", 4, ML_Q8_0, 2, 3, 224, 21, 1, 20, 21, 30, -60, 10, 5, 17);
    qdense_case("qdense_q8_r8", 5, ML_Q8_0, 1, 4, 32, 9, 0, 9, 0, -1, I32_MIN, I32_MAX, 25, 30);
    qdense_case("qdense_q8_r8_i32", 6, ML_Q8_0, 1, 2, 96, 5, 2, 3, 0, 0, -5, 5, 25, 30);
    extreme_cases();
    argmax_case("argmax_q4", 7, ML_Q4_1, 2, 3, 64, 12, 2, 9, 16, 9, 22);
    argmax_case("argmax_q8", 8, ML_Q8_0, 1, 2, 32, 5, 0, 5, 20, 5, 18);
    case_merge();
    embedding_case("embedding_q8", 9, ML_Q8_0, 10, 64, 21, 12, 4, 10, 1);
    embedding_case("embedding_q4_records", 10, ML_Q4_1, 12, 32, 24, 16, 1, 14, 3);
    embedding_case("embedding_q8_saturate", 11, ML_Q8_0, 11, 32, 0, 30, 25, 30, 1);
    case_rmsnorm();
    rope_case("rope_min", 12, 1, 2, 2, 0, 1, 0);
    rope_case("rope", 13, 3, 16, 8, 2, 6, 0);
    rope_case("rope_extreme", 14, 2, 8, 4, 3, 5, 1);
    /* attention: name, seed, T, L, nh, nkv, hd, mul, sa, exponents, extreme. */
    attention_case("attention_min", 15, 1, 1, 1, 1, 1, 6051102, 6, -20, -5, 0);
    attention_case("attention_gqa", 16, 3, 5, 4, 2, 8, 4278775, 7, -20, -12, 0);
    attention_case("attention_wide", 17, 2, 4, 2, 1, 4, 8388607, 62, -40, 40, 1);
    attention_case("attention_sa0", 18, 2, 3, 2, 2, 2, 8388607, 0, -30, -10, 1);
    attention_case("attention_hd256", 19, 1, 2, 1, 1, 256, 6051102, 10, -20, -15, 1);
    case_swiglu();
    case_quantize();
    case_add32();
    cost_cases();
    return 0;
}
