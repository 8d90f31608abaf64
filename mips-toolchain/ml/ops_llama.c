/* The integer kernels of docs/ml-spec.md §10 (the ops of a LLaMA block) and
 * the fp16 scales of §1, mirroring opml.ml.ops byte for byte.
 *
 * All arithmetic is on integers: int64 intermediates (MIPS32 computes a
 * 32×32 → 64-bit product with one mult/madd into hi/lo), every bound of §10
 * keeps them below 2^62, a rounding shift by 63 or more is special-cased
 * (rshr), and 64-bit divisions happen once per row (rmsnorm) or per row and
 * head (attention), never in an inner loop. Signed right shifts of negative
 * values are arithmetic (GCC defines them so), which is the spec's `>>`. */
#include "ml.h"
#include "rt.h"

#define I32_MIN (-2147483647 - 1)
#define I32_MAX 2147483647
#define R16_MAX 32767
#define R16_BITS 15 /* bitlen(32767) */
#define R8_MAX 127
#define R8_BITS 7

/* A row's int32 exponent: r16 rows start at even offsets, r8 rows anywhere. */
struct __attribute__((packed, may_alias)) u32_any {
    uint32_t v;
};

static inline int32_t get_e(const uint8_t *row)
{
    return (int32_t)((const struct u32_any *)row)->v;
}

static inline void put_e(uint8_t *row, int64_t e)
{
    int32_t v = e < I32_MIN ? I32_MIN : e > I32_MAX ? I32_MAX : (int32_t)e;
    ((struct u32_any *)row)->v = (uint32_t)v;
}

static inline uint32_t bitlen32(uint32_t a)
{
    return a ? 32 - (uint32_t)__builtin_clz(a) : 0;
}

static inline uint32_t bitlen64(uint64_t a)
{
    uint32_t hi = (uint32_t)(a >> 32);
    return hi ? 64 - (uint32_t)__builtin_clz(hi) : bitlen32((uint32_t)a);
}

/* rshr(v, n) = (v + 2^(n−1)) >> n for 1 ≤ n ≤ 62, v for n = 0, and 0 for
 * n ≥ 63 (every |v| < 2^62 rounds to 0 there; C's shift would be undefined). */
static inline int64_t rshr(int64_t v, int64_t n)
{
    if (n <= 0)
        return v;
    if (n > ML_MAX_SHIFT)
        return 0;
    return (v + ((int64_t)1 << (n - 1))) >> n;
}

static inline int64_t clamp64(int64_t v, int64_t lo, int64_t hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

/* scale(v, n, lo, hi): clamp(v·2^−n): rshr for n ≥ 0, a saturating exact
 * left shift for n < 0 (shift capped at 62: v = 0 gives 0, anything else
 * saturates there). */
static int64_t scale(int64_t v, int64_t n, int64_t lo, int64_t hi)
{
    if (n >= 0)
        return clamp64(rshr(v, n), lo, hi);
    int64_t k = -n > ML_MAX_SHIFT ? ML_MAX_SHIFT : -n;
    if (v > (hi >> k))
        return hi;
    if (v < -((-lo) >> k))
        return lo;
    return (int64_t)((uint64_t)v << k);
}

/* quant's shift s for a row whose largest magnitude is a: 0 when a ≤ qmax,
 * else s0 = bitlen(a) − bitlen(qmax), plus one when rshr(a, s0) > qmax. */
static inline uint32_t quant_shift(uint64_t a, uint32_t qmax, uint32_t qbits)
{
    if (a <= qmax)
        return 0;
    uint32_t s0 = bitlen64(a) - qbits;
    return s0 + (rshr((int64_t)a, s0) > (int64_t)qmax);
}

/* quant(v[0 … K−1], c, 32767) into an r16 row (its exponent, then K int16). */
static void quant_row16(const int64_t *v, uint32_t K, int64_t c, uint8_t *row)
{
    uint64_t a = 0;
    for (uint32_t i = 0; i < K; i++) {
        int64_t x = v[i];
        uint64_t m = x < 0 ? -(uint64_t)x : (uint64_t)x;
        if (m > a)
            a = m;
    }
    uint32_t s = quant_shift(a, R16_MAX, R16_BITS);
    put_e(row, c + s);
    int16_t *q = (int16_t *)(row + ML_ROW_HEADER);
    if (s == 0) {
        for (uint32_t i = 0; i < K; i++)
            q[i] = (int16_t)v[i];
        return;
    }
    int64_t half = (int64_t)1 << (s - 1);
    for (uint32_t i = 0; i < K; i++)
        q[i] = (int16_t)((v[i] + half) >> s);
}

/* n int64 zeros, two word stores each (the runtime's memset stores bytes;
 * -ftree-loop-distribute-patterns would turn this loop into a memset call). */
static __attribute__((optimize("no-tree-loop-distribute-patterns"))) void zero64(int64_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        p[i] = 0;
}

/* The bytes of one row-scaled row of K values of `size` bytes. */
static inline uint32_t row_bytes(uint32_t K, uint32_t size)
{
    return ML_ROW_HEADER + K * size;
}

/* --- fp16 scales (ml-spec §1) --------------------------------------------------------- */

/* The whole rule, with its errors. */
static __attribute__((noinline)) int32_t fp16_scale_slow(uint32_t h, int32_t F)
{
    uint32_t e = (h >> 10) & 31, f = h & 1023;
    if (e == 31)
        ml_malformed("an fp16 scale is Inf or NaN");
    if (e == 0) {
        if (f)
            ml_malformed("an fp16 scale is subnormal");
        return 0; /* ±0 */
    }
    int32_t n = (int32_t)e - 25 + F; /* the scale is (1024 + f)·2^n */
    uint32_t sig = 1024 + f, mag;
    if (n >= 0) {
        if (n > 13) /* sig ≥ 2^10: sig·2^14 ≥ 2^24 */
            ml_malformed("an fp16 scale times 2^F is 2^24 or more");
        mag = sig << n; /* < 2^24 */
    } else {
        if (sig & ((1u << -n) - 1))
            ml_malformed("an fp16 scale is not a multiple of 2^-F");
        mag = sig >> -n;
    }
    return h >> 15 ? -(int32_t)mag : (int32_t)mag;
}

/* The common case inline: a normal scale (1 ≤ E ≤ 30) with 0 ≤ n ≤ 13. */
static inline int32_t fp16_scale(uint32_t h, int32_t F)
{
    uint32_t e = (h >> 10) & 31, n = e - 25 + (uint32_t)F;
    if (e - 1 < 30 && n < 14) {
        int32_t mag = (int32_t)((1024 | (h & 1023)) << n);
        return h & 0x8000 ? -mag : mag;
    }
    return fp16_scale_slow(h, F);
}

int32_t ml_fp16_scale(uint32_t h, int32_t F)
{
    return fp16_scale(h, F);
}

/* --- block matrices ----------------------------------------------------------------- */

static inline uint32_t block_bytes(uint32_t wtype)
{
    return wtype == ML_Q4_1 ? ML_Q4_1_BYTES : ML_Q8_0_BYTES;
}

static inline uint32_t u16_at(const uint8_t *b)
{
    return *(const uint16_t *)b; /* blocks sit at even offsets of the weight buffer */
}

/* Σ_j q_j·x_j over one block, |.| ≤ 2^27: q4_1 byte j holds q_j (low nibble)
 * and q_{j+16} (high); q8_0 holds 32 int8. x int16 (r16) or int8 (r8).
 * Not inlined: inlined into the loop over rows t, GCC hoists the weights
 * out of it and spills them, which costs more than the call. */
typedef int32_t (*dot_fn)(const uint8_t *w, const void *x);

static __attribute__((noinline)) int32_t dot_q4_1_16(const uint8_t *nib, const void *xv)
{
    const int16_t *x = xv;
    int64_t s = 0; /* accumulated in hi/lo by madd */
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) {
        int32_t b = nib[j];
        s += (int64_t)(b & 15) * x[j];
        s += (int64_t)(b >> 4) * x[j + 16];
    }
    return (int32_t)s;
}

static __attribute__((noinline)) int32_t dot_q4_1_8(const uint8_t *nib, const void *xv)
{
    const int8_t *x = xv;
    int64_t s = 0;
#pragma GCC unroll 16
    for (int j = 0; j < 16; j++) {
        int32_t b = nib[j];
        s += (int64_t)(b & 15) * x[j];
        s += (int64_t)(b >> 4) * x[j + 16];
    }
    return (int32_t)s;
}

static __attribute__((noinline)) int32_t dot_q8_0_16(const uint8_t *qv, const void *xv)
{
    const int8_t *q = (const int8_t *)qv;
    const int16_t *x = xv;
    int64_t s = 0;
#pragma GCC unroll 32
    for (int j = 0; j < 32; j++)
        s += (int64_t)q[j] * x[j];
    return (int32_t)s;
}

static __attribute__((noinline)) int32_t dot_q8_0_8(const uint8_t *qv, const void *xv)
{
    const int8_t *q = (const int8_t *)qv;
    const int8_t *x = xv;
    int64_t s = 0;
#pragma GCC unroll 32
    for (int j = 0; j < 32; j++)
        s += (int64_t)q[j] * x[j];
    return (int32_t)s;
}

/* Σ_j x_{b,j} for every row t and block b of x [T, K] (q4_1's M term). */
static void block_sums(const uint8_t *x, uint32_t T, uint32_t K, uint32_t xsize, int32_t *xsum)
{
    uint32_t xrow = row_bytes(K, xsize);
    for (uint32_t t = 0; t < T; t++) {
        const uint8_t *v = x + t * xrow + ML_ROW_HEADER;
        for (uint32_t k = 0; k < K; k += ML_BLOCK) {
            int32_t s = 0;
            if (xsize == 2)
                for (uint32_t j = 0; j < ML_BLOCK; j++)
                    s += ((const int16_t *)v)[k + j];
            else
                for (uint32_t j = 0; j < ML_BLOCK; j++)
                    s += ((const int8_t *)v)[k + j];
            *xsum++ = s;
        }
    }
}

/* acc[t·M + m] += D·Σ_j q·x + M·Σ_j x for every block (m, b) of rows row0 …
 * row0 + M − 1 and every input row t (the qdense accumulators, ml-spec
 * §10.2). Each buffer fill holds whole blocks; their scales are decoded
 * (and checked) first, then every row t runs over the fill's blocks. */
static void qstream_run(const struct ml_qmat *qm, const uint8_t *x, uint32_t T, uint32_t xsize,
                        const int32_t *xsum, int64_t *acc, uint8_t *buf)
{
    static int32_t dsc[ML_WEIGHT_BUFFER / ML_Q4_1_BYTES], msc[ML_WEIGHT_BUFFER / ML_Q4_1_BYTES];
    uint32_t bs = block_bytes(qm->wtype), nb = qm->K / ML_BLOCK, M = qm->M;
    uint32_t per_fill = ML_WEIGHT_BUFFER / bs, total = M * nb;
    uint32_t offset = qm->row0 * nb * bs; /* < 2^30: the tensor's size is checked */
    uint32_t xrow = row_bytes(qm->K, xsize), xstep = ML_BLOCK * xsize;
    int q4 = qm->wtype == ML_Q4_1;
    dot_fn dot = q4 ? (xsize == 2 ? dot_q4_1_16 : dot_q4_1_8) : (xsize == 2 ? dot_q8_0_16 : dot_q8_0_8);
    uint32_t m0 = 0, b0 = 0; /* the first block of the fill */
    for (uint32_t done = 0; done < total;) {
        uint32_t n = total - done < per_fill ? total - done : per_fill;
        ml_src_read(qm->w, offset + done * bs, buf, n * bs);
        for (uint32_t i = 0; i < n; i++) {
            dsc[i] = fp16_scale(u16_at(buf + i * bs), qm->F);
            if (q4)
                msc[i] = fp16_scale(u16_at(buf + i * bs + 2), qm->F);
        }
        for (uint32_t t = 0; t < T; t++) {
            const uint8_t *xt = x + t * xrow + ML_ROW_HEADER, *xp = xt + b0 * xstep;
            const int32_t *xs = xsum + t * nb;
            const uint8_t *w = buf + (q4 ? 4 : 2);
            int64_t *a = acc + t * M + m0;
            int64_t run = 0;
            uint32_t b = b0;
            for (uint32_t i = 0; i < n; i++, w += bs) {
                run += (int64_t)dsc[i] * dot(w, xp);
                if (q4)
                    run += (int64_t)msc[i] * xs[b];
                xp += xstep;
                if (++b == nb) {
                    *a++ += run;
                    run = 0;
                    b = 0;
                    xp = xt;
                }
            }
            if (b)
                *a += run;
        }
        done += n;
        b0 += n;
        m0 += b0 / nb;
        b0 %= nb;
    }
}

void ml_qdense(const uint8_t *x, uint32_t T, uint32_t xsize, const struct ml_qmat *qm, int32_t R, uint8_t *y,
               int64_t *acc, int32_t *xsum, uint8_t *buf)
{
    uint32_t M = qm->M, K = qm->K, xrow = row_bytes(K, xsize);
    if (qm->wtype == ML_Q4_1)
        block_sums(x, T, K, xsize, xsum);
    zero64(acc, T * M);
    qstream_run(qm, x, T, xsize, xsum, acc, buf);
    for (uint32_t t = 0; t < T; t++) {
        int64_t e = get_e(x + t * xrow);
        if (R < 0) {
            quant_row16(acc + t * M, M, e - qm->F, y + t * row_bytes(M, 2));
        } else {
            int32_t *yr = (int32_t *)y + t * M;
            int64_t n = (int64_t)qm->F - R - e;
            for (uint32_t m = 0; m < M; m++)
                yr[m] = (int32_t)scale(acc[t * M + m], n, I32_MIN, I32_MAX);
        }
    }
}

/* The argmax record of each row's accumulators: the first of the largest. */
void ml_qdense_argmax(const uint8_t *x, uint32_t T, uint32_t xsize, const struct ml_qmat *qm, int32_t *y,
                      int64_t *acc, int32_t *xsum, uint8_t *buf)
{
    uint32_t M = qm->M;
    if (qm->wtype == ML_Q4_1)
        block_sums(x, T, qm->K, xsize, xsum);
    zero64(acc, T * M);
    qstream_run(qm, x, T, xsize, xsum, acc, buf);
    for (uint32_t t = 0; t < T; t++, acc += M, y += 3) {
        uint32_t best = 0;
        int64_t v = acc[0];
        for (uint32_t m = 1; m < M; m++)
            if (acc[m] > v) {
                v = acc[m];
                best = m;
            }
        y[0] = (int32_t)(qm->row0 + best);
        y[1] = (int32_t)(uint32_t)(uint64_t)v;
        y[2] = (int32_t)(uint32_t)((uint64_t)v >> 32);
    }
}

void ml_argmax_merge(const int32_t *a, const int32_t *b, uint32_t T, int32_t *y)
{
    for (uint32_t t = 0; t < T; t++, a += 3, b += 3, y += 3) {
        int64_t va = (int64_t)((uint64_t)(uint32_t)a[2] << 32 | (uint32_t)a[1]);
        int64_t vb = (int64_t)((uint64_t)(uint32_t)b[2] << 32 | (uint32_t)b[1]);
        const int32_t *r = vb > va || (vb == va && b[0] < a[0]) ? b : a;
        y[0] = r[0];
        y[1] = r[1];
        y[2] = r[2];
    }
}

void ml_embedding(const int32_t *ids, uint32_t T, uint32_t stride, const struct ml_qmat *qm, int32_t R,
                  int32_t *y, uint8_t *buf)
{
    uint32_t H = qm->K, bs = block_bytes(qm->wtype), nb = H / ML_BLOCK, per_fill = ML_WEIGHT_BUFFER / bs;
    int64_t n = (int64_t)qm->F - R;
    for (uint32_t t = 0; t < T; t++, y += H) {
        int32_t id = ids[t * stride];
        if (id < 0 || (uint32_t)id >= qm->M) {
            memset(y, 0, 4 * H);
            continue;
        }
        uint32_t offset = (uint32_t)id * nb * bs;
        int32_t *yb = y;
        for (uint32_t done = 0; done < nb;) {
            uint32_t cnt = nb - done < per_fill ? nb - done : per_fill;
            ml_src_read(qm->w, offset + done * bs, buf, cnt * bs);
            for (uint32_t i = 0; i < cnt; i++, yb += ML_BLOCK) {
                const uint8_t *blk = buf + i * bs;
                int32_t d = fp16_scale(u16_at(blk), qm->F);
                if (qm->wtype == ML_Q4_1) {
                    int32_t mm = fp16_scale(u16_at(blk + 2), qm->F);
                    for (uint32_t j = 0; j < 16; j++) {
                        uint32_t byte = blk[4 + j];
                        yb[j] = (int32_t)scale((int64_t)d * (int32_t)(byte & 15) + mm, n, I32_MIN, I32_MAX);
                        yb[j + 16] = (int32_t)scale((int64_t)d * (int32_t)(byte >> 4) + mm, n, I32_MIN, I32_MAX);
                    }
                } else {
                    const int8_t *q = (const int8_t *)(blk + 2);
                    for (uint32_t j = 0; j < ML_BLOCK; j++)
                        yb[j] = (int32_t)scale((int64_t)d * q[j], n, I32_MIN, I32_MAX);
                }
            }
            done += cnt;
        }
    }
}

/* --- rmsnorm -------------------------------------------------------------------------- */

/* The largest r with r² ≤ v (v < 2^63), digit by digit. */
static uint64_t isqrt64(uint64_t v)
{
    uint64_t r = 0, bit = (uint64_t)1 << 62;
    while (bit > v)
        bit >>= 2;
    while (bit) {
        if (v >= r + bit) {
            v -= r + bit;
            r = (r >> 1) + bit;
        } else {
            r >>= 1;
        }
        bit >>= 2;
    }
    return r;
}

void ml_rmsnorm(const int32_t *x, uint32_t T, uint32_t H, const int16_t *g, int32_t Gf, int32_t eps, uint8_t *y,
                int64_t *v)
{
    uint32_t yrow = row_bytes(H, 2);
    for (uint32_t t = 0; t < T; t++, x += H, y += yrow) {
        uint32_t a = 0;
        for (uint32_t i = 0; i < H; i++) {
            int32_t xi = x[i];
            uint32_t m = xi < 0 ? -(uint32_t)xi : (uint32_t)xi;
            if (m > a)
                a = m;
        }
        if (a == 0) {
            put_e(y, 0);
            memset(y + ML_ROW_HEADER, 0, 2 * H);
            continue;
        }
        /* 1. x' = x·2^−sh with 2^22 ≤ max|x'| ≤ 2^23; 2. its mean square. */
        int32_t sh = (int32_t)bitlen32(a) - 23;
        int64_t ss = 0, eps2;
        if (sh <= 0) {
            for (uint32_t i = 0; i < H; i++) {
                int32_t xp = (int32_t)((uint32_t)x[i] << -sh);
                v[i] = xp;
                ss += (int64_t)xp * xp;
            }
            eps2 = (int64_t)eps << (-2 * sh);
        } else {
            int64_t half = (int64_t)1 << (sh - 1);
            for (uint32_t i = 0; i < H; i++) {
                int32_t xp = (int32_t)(((int64_t)x[i] + half) >> sh);
                v[i] = xp;
                ss += (int64_t)xp * xp;
            }
            eps2 = rshr(eps, 2 * sh);
        }
        uint64_t w = (uint64_t)ss / H + (uint64_t)eps2;
        /* 3. r = isqrt(w·2^(2j)) ∈ [2^29, 2^31); 4. inv = 2^62 // r. */
        uint32_t bl = bitlen64(w);
        uint32_t j = bl >= 61 ? 0 : (61 - bl) / 2;
        uint64_t r = isqrt64(w << (2 * j));
        uint64_t inv = ((uint64_t)1 << 62) / (r ? r : 1);
        /* 5. u = rshr(x'·inv, 24), then quant(u·g, j − 38 − Gf). */
        for (uint32_t i = 0; i < H; i++) {
            int64_t u = rshr(v[i] * (int64_t)inv, 24);
            v[i] = u * g[i];
        }
        quant_row16(v, H, (int64_t)j - 38 - Gf, y);
    }
}

/* --- rope ----------------------------------------------------------------------------- */

void ml_rope(const uint8_t *x, uint32_t T, uint32_t W, uint32_t hd, uint32_t pos0, const struct ml_src *table,
             uint8_t *y, int64_t *v, uint8_t *buf)
{
    uint32_t row = row_bytes(W, 2), half = hd / 2;
    const int32_t *C = (const int32_t *)buf;
    for (uint32_t t = 0; t < T; t++, x += row, y += row) {
        ml_src_read(table, (pos0 + t) * 4 * hd, buf, 4 * hd); /* C[p] = [hd/2, 2] */
        for (uint32_t i = 0; i < hd; i++)
            if (C[i] < -ML_TABLE_ONE || C[i] > ML_TABLE_ONE)
                ml_malformed("a rope table value outside -2^30 … 2^30");
        const int16_t *q = (const int16_t *)(x + ML_ROW_HEADER);
        uint32_t i = 0;
        for (uint32_t k = 0; k < W; k += 2) {
            int32_t a = q[k], b = q[k + 1], c = C[2 * i], s = C[2 * i + 1];
            v[k] = (int64_t)a * c - (int64_t)b * s;
            v[k + 1] = (int64_t)a * s + (int64_t)b * c;
            if (++i == half)
                i = 0;
        }
        quant_row16(v, W, (int64_t)get_e(x) - 30, y);
    }
}

/* --- attention ------------------------------------------------------------------------ */

/* 2^30·2^(−u/2^16) for u ≥ 0: the table interpolated on 6 bits, then shifted
 * by the integer part (ml-spec §10.1). */
static inline int64_t exp2neg(uint64_t u, const int32_t *X)
{
    uint64_t z = u >> 16;
    uint32_t f = (uint32_t)u & 0xFFFF, i = f >> 6, r = f & 63;
    int64_t t = ((int64_t)(64 - r) * X[i] + (int64_t)r * X[i + 1] + 32) >> 6;
    return z > ML_MAX_SHIFT ? 0 : rshr(t, (int64_t)z);
}

#define LOGIT_LIMIT ((int64_t)1 << 40)

/* Σ_d a_d·b_d of int16 vectors (|.| ≤ 2^38 for n ≤ 256), 16 madd per
 * iteration: GCC keeps hi/lo across an unrolled body, not across a loop. */
static int64_t dot16(const int16_t *a, const int16_t *b, uint32_t n)
{
    int64_t s = 0;
    for (; n >= 16; n -= 16, a += 16, b += 16) {
        int64_t p = (int64_t)a[0] * b[0];
#pragma GCC unroll 15
        for (int i = 1; i < 16; i++)
            p += (int64_t)a[i] * b[i];
        s += p;
    }
    for (; n; n--)
        s += (int64_t)*a++ * *b++;
    return s;
}

/* Σ_j p_j·v_j for v_j the int16 at v + j·stride (|.| < 2^46 for Σ p ≤ 2^30 + n). */
static int64_t dot_strided(const int32_t *p, const uint8_t *v, uint32_t stride, uint32_t n)
{
    int64_t s = 0;
    for (; n >= 8; n -= 8, p += 8) {
        int64_t t = (int64_t)p[0] * *(const int16_t *)v;
#pragma GCC unroll 7
        for (int i = 1; i < 8; i++) {
            v += stride;
            t += (int64_t)p[i] * *(const int16_t *)v;
        }
        v += stride;
        s += t;
    }
    for (; n; n--, v += stride)
        s += (int64_t)*p++ * *(const int16_t *)v;
    return s;
}

void ml_attention(const struct ml_attn *at, const uint8_t *q, const uint8_t *kv, const int32_t *X, uint8_t *y,
                  int64_t *lg, int32_t *pw, int64_t *o, int32_t *ek, int32_t *al)
{
    uint32_t hd = at->hd, W = at->nh * hd, Wkv = at->nkv * hd, group = at->nh / at->nkv;
    uint32_t qrow = row_bytes(W, 2), kvrow = row_bytes(Wkv, 2);
    for (uint32_t j = 0; j < at->L; j++) /* the key exponents, once */
        ek[j] = get_e(kv + 2 * j * kvrow);
    for (uint32_t t = 0; t < at->T; t++, q += qrow, y += qrow) {
        uint32_t n = at->L - at->T + t + 1; /* KV rows 0 … L − T + t: the causal mask */
        int64_t sq = (int64_t)at->sa - get_e(q), E = I32_MIN;
        for (uint32_t j = 0; j < n; j++) {
            int64_t ev = get_e(kv + (2 * j + 1) * kvrow);
            al[j] = (int32_t)ev;
            if (ev > E)
                E = ev;
        }
        for (uint32_t j = 0; j < n; j++) { /* 4. the alignment of p_j to E, capped: rshr by ≥ 63 is 0 */
            int64_t a = E - al[j];
            al[j] = a > 63 ? 63 : (int32_t)a;
        }
        const int16_t *qv = (const int16_t *)(q + ML_ROW_HEADER);
        for (uint32_t h = 0; h < at->nh; h++) {
            uint32_t col = (h / group) * hd; /* KV head g = h / (nh/nkv) */
            const int16_t *qh = qv + h * hd;
            /* 1. l_j = scale(q·k_j · mul, sa − e_t − ek_j, ±2^40). */
            int64_t top = -LOGIT_LIMIT;
            const int16_t *kh = (const int16_t *)(kv + ML_ROW_HEADER) + col;
            for (uint32_t j = 0; j < n; j++, kh += kvrow) { /* kvrow bytes: 2 rows of int16 */
                int64_t l = scale(dot16(qh, kh, hd) * at->mul, sq - ek[j], -LOGIT_LIMIT, LOGIT_LIMIT);
                lg[j] = l;
                if (l > top)
                    top = l;
            }
            /* 2. w_j = exp2neg(m − l_j), S = Σ w_j ∈ [2^30, 2^46]. */
            int64_t S = 0;
            for (uint32_t j = 0; j < n; j++) {
                int64_t w = exp2neg((uint64_t)(top - lg[j]), X);
                lg[j] = w;
                S += w;
            }
            /* 3. p_j = rshr(w_j·r, 32 + sS) with r = 2^62 // (S >> sS) ≤ 2^32,
             * then shifted to E. */
            uint32_t sS = bitlen64((uint64_t)S) > 32 ? bitlen64((uint64_t)S) - 32 : 0;
            uint64_t r = ((uint64_t)1 << 62) / (uint32_t)((uint64_t)S >> sS);
            for (uint32_t j = 0; j < n; j++) {
                int64_t p = rshr((int64_t)((uint64_t)lg[j] * r), 32 + sS);
                pw[j] = (int32_t)rshr(p, al[j]);
            }
            /* o_d = Σ_j p_j · v_j[g·hd + d]. */
            const uint8_t *v0 = kv + kvrow + ML_ROW_HEADER + 2 * col;
            for (uint32_t d = 0; d < hd; d++)
                o[h * hd + d] = dot_strided(pw, v0 + 2 * d, 2 * kvrow, n);
        }
        quant_row16(o, W, E - 30, y);
    }
}

/* --- swiglu --------------------------------------------------------------------------- */

/* 2^30·sigmoid(x16/2^16) for x16 ∈ [−2^20, 2^20]: the table interpolated on 10 bits. */
static inline int64_t sigmoid(int32_t x16, const int32_t *G)
{
    uint32_t u = (uint32_t)(x16 + (1 << 20));
    uint32_t i = u >> 10;
    if (i > 2047)
        i = 2047;
    uint32_t r = u - (i << 10);
    return ((int64_t)(1024 - r) * G[i] + (int64_t)r * G[i + 1] + 512) >> 10;
}

void ml_swiglu(const uint8_t *gate, const uint8_t *up, uint32_t T, uint32_t F, const int32_t *G, uint8_t *y,
               int64_t *v)
{
    uint32_t row = row_bytes(F, 2);
    for (uint32_t t = 0; t < T; t++, gate += row, up += row, y += row) {
        int64_t eg = get_e(gate), eu = get_e(up), n = -eg - 16;
        const int16_t *a = (const int16_t *)(gate + ML_ROW_HEADER);
        const int16_t *b = (const int16_t *)(up + ML_ROW_HEADER);
        for (uint32_t i = 0; i < F; i++) {
            int32_t x16 = (int32_t)scale(a[i], n, -(1 << 20), 1 << 20);
            v[i] = (int64_t)((int32_t)a[i] * b[i]) * sigmoid(x16, G); /* |a·b| ≤ 2^30 */
        }
        quant_row16(v, F, eg + eu - 30, y);
    }
}

/* --- quantize, add32 ------------------------------------------------------------------ */

/* rshr(x, s) for 1 ≤ s ≤ 31 in 32 bits: floor(x / 2^s) plus bit s − 1 of x. */
static inline int32_t rshr32(int32_t x, uint32_t s)
{
    return (x >> s) + ((x >> (s - 1)) & 1);
}

void ml_quantize_i32(const int32_t *x, uint32_t rows, uint32_t K, int32_t fx, uint32_t qmax, uint8_t *y)
{
    uint32_t size = qmax == R16_MAX ? 2 : 1, qbits = qmax == R16_MAX ? R16_BITS : R8_BITS;
    for (uint32_t t = 0; t < rows; t++, x += K, y += row_bytes(K, size)) {
        uint32_t a = 0;
        for (uint32_t i = 0; i < K; i++) {
            int32_t xi = x[i];
            uint32_t m = xi < 0 ? -(uint32_t)xi : (uint32_t)xi;
            if (m > a)
                a = m;
        }
        uint32_t s = quant_shift(a, qmax, qbits); /* ≤ 26: a ≤ 2^31 */
        put_e(y, (int64_t)s - fx);
        uint8_t *q = y + ML_ROW_HEADER;
        for (uint32_t i = 0; i < K; i++) {
            int32_t v = s ? rshr32(x[i], s) : x[i];
            if (size == 2)
                ((int16_t *)q)[i] = (int16_t)v;
            else
                ((int8_t *)q)[i] = (int8_t)v;
        }
    }
}

void ml_quantize_r16(const uint8_t *x, uint32_t rows, uint32_t K, uint8_t *y)
{
    for (uint32_t t = 0; t < rows; t++, x += row_bytes(K, 2), y += row_bytes(K, 1)) {
        const int16_t *q = (const int16_t *)(x + ML_ROW_HEADER);
        uint32_t a = 0;
        for (uint32_t i = 0; i < K; i++) {
            int32_t qi = q[i];
            uint32_t m = qi < 0 ? (uint32_t)-qi : (uint32_t)qi;
            if (m > a)
                a = m;
        }
        uint32_t s = quant_shift(a, R8_MAX, R8_BITS); /* ≤ 9 */
        put_e(y, (int64_t)get_e(x) + s);
        int8_t *o = (int8_t *)(y + ML_ROW_HEADER);
        for (uint32_t i = 0; i < K; i++)
            o[i] = (int8_t)(s ? rshr32(q[i], s) : q[i]);
    }
}

void ml_add32(const int32_t *a, const int32_t *b, uint32_t n, int32_t *y)
{
    for (uint32_t i = 0; i < n; i++)
        y[i] = (int32_t)clamp64((int64_t)a[i] + b[i], I32_MIN, I32_MAX);
}
