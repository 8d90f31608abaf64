/* The integer kernels of docs/ml-spec.md §4. Signed right shifts of negative
 * values are arithmetic (GCC defines them so), which is the spec's `>>`. */
#include "ml.h"
#include "rt.h"

void ml_dense(const int8_t *x, uint32_t K, uint32_t M, int32_t zx, const struct ml_src *w,
              int32_t *y, uint8_t *buf)
{
    uint32_t total = M * K, pos = 0, m = 0, k = 0;
    int32_t acc = y[0];
    while (pos < total) {
        uint32_t n = total - pos < ML_WEIGHT_BUFFER ? total - pos : ML_WEIGHT_BUFFER;
        ml_src_read(w, pos, buf, n);
        const int8_t *wb = (const int8_t *)buf;
        uint32_t i = 0;
        while (i < n) {
            uint32_t run = K - k < n - i ? K - k : n - i; /* the rest of row m in this piece */
            const int8_t *xr = x + k;
            const int8_t *wr = wb + i;
            for (uint32_t j = 0; j < run; j++)
                acc += ((int32_t)xr[j] - zx) * (int32_t)wr[j];
            i += run;
            k += run;
            if (k == K) {
                y[m++] = acc;
                k = 0;
                if (m < M)
                    acc = y[m];
            }
        }
        pos += n;
    }
}

void ml_conv2d(const int8_t *x, const struct ml_conv *cv, const struct ml_src *w,
               const struct ml_src *bias, int32_t *y, uint8_t *buf)
{
    uint32_t filter = cv->KH * cv->KW * cv->C;
    const int8_t *f = (const int8_t *)buf;
    for (uint32_t oc = 0; oc < cv->OC; oc++) {
        ml_src_read(w, oc * filter, buf, filter);
        int32_t b = 0;
        if (bias)
            ml_src_read(bias, 4 * oc, &b, 4);
        for (uint32_t oh = 0; oh < cv->OH; oh++) {
            for (uint32_t ow = 0; ow < cv->OW; ow++) {
                int32_t acc = b;
                int32_t h0 = (int32_t)(oh * cv->sh) - (int32_t)cv->pt;
                int32_t w0 = (int32_t)(ow * cv->sw) - (int32_t)cv->pl;
                for (uint32_t i = 0; i < cv->KH; i++) {
                    int32_t h = h0 + (int32_t)i;
                    if (h < 0 || h >= (int32_t)cv->H)
                        continue; /* padding reads as zx: contributes 0 */
                    for (uint32_t j = 0; j < cv->KW; j++) {
                        int32_t ww = w0 + (int32_t)j;
                        if (ww < 0 || ww >= (int32_t)cv->W)
                            continue;
                        const int8_t *xp = x + ((uint32_t)h * cv->W + (uint32_t)ww) * cv->C;
                        const int8_t *fp = f + (i * cv->KW + j) * cv->C;
                        for (uint32_t c = 0; c < cv->C; c++)
                            acc += ((int32_t)xp[c] - cv->zx) * (int32_t)fp[c];
                    }
                }
                y[(oh * cv->OW + ow) * cv->OC + oc] = acc;
            }
        }
    }
}

static int32_t clamp(int64_t v, int32_t lo, int32_t hi)
{
    return v < lo ? lo : v > hi ? hi : (int32_t)v;
}

/* v / 2^k rounded half to even for 1 ≤ k ≤ 62, (v + 2^(k−1) − 1 + ((v >> k) & 1)) >> k (ml-spec §4). */
static inline int64_t rne_shr(int64_t v, uint32_t k)
{
    return (v + ((int64_t)1 << (k - 1)) - 1 + ((v >> k) & 1)) >> k;
}

/* Mode 2 (ml-spec §4): round_half_even(fl(fl(x)·r)), r = M0·2^−t exact in float32 (M0 < 2^24), in
 * integers. fl(x) = a·2^s1 (x itself below 2^24), fl(a·M0) = q·2^s2 (|a·M0| < 2^48), then q·2^(s1+s2−t)
 * rounded half to even. Every step rounds a signed value with the floor formula, which is symmetric. */
static int64_t f32_requantize(int32_t x, int32_t m0, int32_t t)
{
    uint32_t ux = x < 0 ? 0u - (uint32_t)x : (uint32_t)x;
    int32_t a = x;
    uint32_t s = 0;
    if (ux >> 24) { /* bitlen(|x|) = 25 … 32: keep 24 bits; a ≤ 2^24 in magnitude */
        s = 8 - (uint32_t)__builtin_clz(ux);
        a = (int32_t)rne_shr(x, s);
    }
    int64_t p = (int64_t)a * m0;
    uint64_t up = p < 0 ? 0 - (uint64_t)p : (uint64_t)p;
    uint32_t hi = (uint32_t)(up >> 32), lo = (uint32_t)up;
    uint32_t n = hi ? 64 - (uint32_t)__builtin_clz(hi) : lo ? 32 - (uint32_t)__builtin_clz(lo) : 0;
    int64_t q = p;
    if (n > 24) {
        q = rne_shr(p, n - 24);
        s += n - 24;
    }
    return (uint32_t)t > s ? rne_shr(q, (uint32_t)t - s) : q * ((int64_t)1 << (s - (uint32_t)t));
}

/* n elements `stride` apart in mode 2. */
static inline __attribute__((always_inline)) void requantize_f32(const int32_t *x, uint32_t n, uint32_t stride,
                                                                 int32_t m0, int32_t t, int32_t zy,
                                                                 int32_t lo, int32_t hi, int8_t *y)
{
    for (uint32_t i = 0; i < n; i++, x += stride, y += stride)
        *y = (int8_t)clamp(f32_requantize(*x, m0, t) + zy, lo, hi);
}

/* Mode 2, out of line with the signatures of the public kernels (their calls are tail calls), so that
 * modes 0 and 1 keep the code and the step counts they had before mode 2. */
static __attribute__((noinline)) void requantize_f32_all(const int32_t *x, uint32_t n, int32_t m0, int32_t t,
                                                         int32_t zy, int32_t lo, int32_t hi, int32_t mode,
                                                         int8_t *y)
{
    (void)mode;
    requantize_f32(x, n, 1, m0, t, zy, lo, hi, y);
}

static __attribute__((noinline)) void requantize_channels_f32(const int32_t *x, uint32_t rows,
                                                              uint32_t stride, uint32_t nc,
                                                              const int32_t *mt, int32_t zy, int32_t lo,
                                                              int32_t hi, int32_t mode, int8_t *y)
{
    (void)mode;
    for (uint32_t c = 0; c < nc; c++) /* channel by channel, down the rows */
        requantize_f32(x + c, rows, stride, mt[2 * c], mt[2 * c + 1], zy, lo, hi, y + c);
}

/* Modes 0 and 1, out of line: the code they had before mode 2 (their step counts unchanged). */
static __attribute__((noinline)) void requantize_fixed(const int32_t *x, uint32_t n, int32_t m0, int32_t t,
                                                       int32_t zy, int32_t lo, int32_t hi, int32_t mode,
                                                       int8_t *y)
{
    int64_t half = (int64_t)1 << (t - 1);
    if (mode == 0) {
        for (uint32_t i = 0; i < n; i++) {
            int64_t v = ((int64_t)x[i] * m0 + half) >> t;
            y[i] = (int8_t)clamp(v + zy, lo, hi);
        }
        return;
    }
    /* Half to even, (v + 2^(t−1) − 1 + ((v >> t) & 1)) >> t of the spec, computed as half up then, at a
     * tie (v = (2k+1)·2^(t−1), so the low t bits of v + 2^(t−1) are zero), k + 1 with bit 0 cleared: k
     * when k + 1 is odd. Fewer steps than a second 64-bit shift; |v| < 2^62, nothing overflows. */
    uint64_t mask = ((uint64_t)1 << t) - 1;
    for (uint32_t i = 0; i < n; i++) {
        int64_t s = (int64_t)x[i] * m0 + half;
        int64_t q = s >> t;
        if (((uint64_t)s & mask) == 0)
            q &= ~(int64_t)1;
        y[i] = (int8_t)clamp(q + zy, lo, hi);
    }
}

static __attribute__((noinline)) void requantize_channels_fixed(const int32_t *x, uint32_t rows,
                                                                uint32_t stride, uint32_t nc,
                                                                const int32_t *mt, int32_t zy, int32_t lo,
                                                                int32_t hi, int32_t mode, int8_t *y)
{
    /* Channel by channel, down the rows: each channel's (M0, t) as ml_requantize's, for either mode. */
    for (uint32_t c = 0; c < nc; c++) {
        int32_t m0 = mt[2 * c], t = mt[2 * c + 1];
        int64_t half = (int64_t)1 << (t - 1);
        uint64_t mask = mode ? ((uint64_t)1 << t) - 1 : 0;
        const int32_t *xc = x + c;
        int8_t *yc = y + c;
        for (uint32_t r = 0; r < rows; r++, xc += stride, yc += stride) {
            int64_t s = (int64_t)*xc * m0 + half;
            int64_t q = s >> t;
            if (mode && ((uint64_t)s & mask) == 0)
                q &= ~(int64_t)1;
            *yc = (int8_t)clamp(q + zy, lo, hi);
        }
    }
}

void ml_requantize(const int32_t *x, uint32_t n, int32_t m0, int32_t t, int32_t zy, int32_t lo,
                   int32_t hi, int32_t mode, int8_t *y)
{
    if (mode == 2)
        requantize_f32_all(x, n, m0, t, zy, lo, hi, mode, y);
    else
        requantize_fixed(x, n, m0, t, zy, lo, hi, mode, y);
}

void ml_requantize_channels(const int32_t *x, uint32_t rows, uint32_t stride, uint32_t nc,
                            const int32_t *mt, int32_t zy, int32_t lo, int32_t hi, int32_t mode, int8_t *y)
{
    if (mode == 2)
        requantize_channels_f32(x, rows, stride, nc, mt, zy, lo, hi, mode, y);
    else
        requantize_channels_fixed(x, rows, stride, nc, mt, zy, lo, hi, mode, y);
}

void ml_add(const int8_t *a, const int8_t *b, uint32_t n, const int32_t p[8], int8_t *y)
{
    int32_t za = p[0], ma = p[1], zb = p[2], mb = p[3], t = p[4], zy = p[5], lo = p[6], hi = p[7];
    int64_t half = (int64_t)1 << (t - 1);
    for (uint32_t i = 0; i < n; i++) {
        int64_t v = ((int64_t)(a[i] - za) * ma + (int64_t)(b[i] - zb) * mb + half) >> t;
        y[i] = (int8_t)clamp(v + zy, lo, hi);
    }
}

void ml_relu_i8(const int8_t *x, uint32_t n, int32_t z, int8_t *y)
{
    for (uint32_t i = 0; i < n; i++)
        y[i] = x[i] > z ? x[i] : (int8_t)z;
}

void ml_relu_i32(const int32_t *x, uint32_t n, int32_t z, int32_t *y)
{
    for (uint32_t i = 0; i < n; i++)
        y[i] = x[i] > z ? x[i] : z;
}

void ml_maxpool(const int8_t *x, const struct ml_pool *pl, int8_t *y)
{
    for (uint32_t oh = 0; oh < pl->OH; oh++)
        for (uint32_t ow = 0; ow < pl->OW; ow++)
            for (uint32_t c = 0; c < pl->C; c++) {
                int32_t best = -128;
                for (uint32_t i = 0; i < pl->KH; i++)
                    for (uint32_t j = 0; j < pl->KW; j++) {
                        int32_t v = x[((oh * pl->sh + i) * pl->W + ow * pl->sw + j) * pl->C + c];
                        if (v > best)
                            best = v;
                    }
                y[(oh * pl->OW + ow) * pl->C + c] = (int8_t)best;
            }
}

/* Floor division by a positive divisor (C's `/` truncates towards zero). */
static int64_t floor_div(int64_t a, int64_t b)
{
    int64_t q = a / b;
    return (a % b != 0 && a < 0) ? q - 1 : q;
}

void ml_avgpool(const int8_t *x, const struct ml_pool *pl, int8_t *y)
{
    int64_t n = (int64_t)pl->KH * pl->KW;
    for (uint32_t oh = 0; oh < pl->OH; oh++)
        for (uint32_t ow = 0; ow < pl->OW; ow++)
            for (uint32_t c = 0; c < pl->C; c++) {
                int64_t s = 0;
                for (uint32_t i = 0; i < pl->KH; i++)
                    for (uint32_t j = 0; j < pl->KW; j++)
                        s += x[((oh * pl->sh + i) * pl->W + ow * pl->sw + j) * pl->C + c];
                y[(oh * pl->OW + ow) * pl->C + c] = (int8_t)floor_div(2 * s + n, 2 * n);
            }
}

int32_t ml_argmax_i8(const int8_t *x, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

int32_t ml_argmax_i32(const int32_t *x, uint32_t n)
{
    uint32_t best = 0;
    for (uint32_t i = 1; i < n; i++)
        if (x[i] > x[best])
            best = i;
    return (int32_t)best;
}

void ml_lut(const int8_t *x, uint32_t n, const int8_t table[256], int8_t *y)
{
    for (uint32_t i = 0; i < n; i++)
        y[i] = table[x[i] + 128];
}

void ml_softmax(const int8_t *x, uint32_t n, const int32_t table[256], int8_t *y)
{
    int32_t max = -128;
    for (uint32_t i = 0; i < n; i++)
        if (x[i] > max)
            max = x[i];
    uint32_t s = 0; /* ≤ 32767 · 2^16 < 2^31 */
    for (uint32_t i = 0; i < n; i++)
        s += (uint32_t)table[x[i] - max + 255];
    for (uint32_t i = 0; i < n; i++) {
        if (s == 0) {
            y[i] = -128;
            continue;
        }
        uint32_t q = (256u * (uint32_t)table[x[i] - max + 255] + (s >> 1)) / s;
        y[i] = (int8_t)clamp((int64_t)q - 128, -128, 127);
    }
}
