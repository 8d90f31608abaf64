/* ml_kernels: the ML kernels of ml/ops.c on embedded data, without the oracle,
 * so that qemu-mipsel (which has no oracle) is a reference for them.
 *
 * Inputs come from xorshift32 (seed below; tests/ml/test_ml_kernels.py draws
 * the same numbers in Python) and from hand-picked extremes. Each case prints
 * one line, "<case> <output bytes as hex>", which the test compares with
 * numpy (opml.ml.ops) and which tests/expected/ml_kernels.out pins. */
#include "kernel_io.h"
#include "ml.h"
#include "rt.h"

static void fill_i8(int8_t *p, uint32_t n)
{
    for (uint32_t i = 0; i < n; i++)
        p[i] = (int8_t)(next_u32() >> 24);
}

static void fill_i32(int32_t *p, uint32_t n, uint32_t shift)
{
    for (uint32_t i = 0; i < n; i++)
        p[i] = (int32_t)next_u32() >> shift;
}

static int8_t xa[512], xb[512], w8[2048], y8[512];
static int32_t x32[256], bias[64], y32[512], table32[256];
static uint8_t buf[ML_WEIGHT_BUFFER];

static void dense_case(const char *name, uint32_t K, uint32_t M, int32_t zx, int with_bias)
{
    struct ml_src w;
    ml_src_mem(&w, w8, K * M);
    for (uint32_t m = 0; m < M; m++)
        y32[m] = with_bias ? bias[m] : 0;
    ml_dense(xa, K, M, zx, &w, y32, buf);
    emit(name, y32, 4 * M);
}

int main(void)
{
    /* dense: random, then the largest products (x − zx = −255, w = −128). */
    fill_i8(xa, 37);
    fill_i8(w8, 37 * 5);
    fill_i32(bias, 5, 8);
    dense_case("dense", 37, 5, -3, 1);
    dense_case("dense_nobias", 37, 5, 0, 0);
    for (int i = 0; i < 100; i++)
        xa[i] = -128;
    for (int i = 0; i < 200; i++)
        w8[i] = -128;
    bias[0] = 2147483647 - 100 * ML_MAX_PRODUCT;
    bias[1] = -bias[0];
    dense_case("dense_extreme", 100, 2, 127, 1);

    /* conv2d: 5×6×3 input, 4 filters 3×2, stride (2, 1), pads (1, 0, 1, 1). */
    fill_i8(xa, 5 * 6 * 3);
    fill_i8(w8, 4 * 3 * 2 * 3);
    fill_i32(bias, 4, 12);
    {
        struct ml_conv cv = { .H = 5, .W = 6, .C = 3, .OH = 3, .OW = 6, .OC = 4, .KH = 3, .KW = 2,
                              .sh = 2, .sw = 1, .pt = 1, .pl = 0, .zx = 5 };
        struct ml_src w, b;
        ml_src_mem(&w, w8, 4 * 3 * 2 * 3);
        ml_src_mem(&b, bias, 4 * 4);
        ml_conv2d(xa, &cv, &w, &b, y32, buf);
        emit("conv2d", y32, 4 * 3 * 6 * 4);
        ml_conv2d(xa, &cv, &w, 0, y32, buf);
        emit("conv2d_nobias", y32, 4 * 3 * 6 * 4);
    }

    /* requantize: random accumulators and the extremes, with saturation. */
    fill_i32(x32, 60, 0);
    x32[0] = -2147483647 - 1;
    x32[1] = 2147483647;
    x32[2] = 0;
    x32[3] = -1;
    x32[4] = 1;
    ml_requantize(x32, 64, 1518500250, 38, -5, -128, 127, 0, y8);
    emit("requantize", y8, 64);
    ml_requantize(x32, 64, 2147483647, 31, 127, -128, 127, 0, y8);
    emit("requantize_saturate", y8, 64);
    ml_requantize(x32, 64, 1, 1, 0, -20, 30, 0, y8);
    emit("requantize_clamp", y8, 64);
    x32[5] = 3;  /* 3·1 + 2 >> 2 = 1: a tie (0.75 → 1) and -3 → -1 (half up: -0.75 → -1) */
    x32[6] = -3;
    x32[7] = 2;  /* exactly 0.5 → 1 */
    x32[8] = -2; /* exactly -0.5 → 0 (half up) */
    ml_requantize(x32, 64, 1, 2, 0, -128, 127, 0, y8);
    emit("requantize_ties", y8, 64);

    /* requantize mode 1 (half to even): the accumulators above, then x32[64 … 127] = the extremes,
     * ±2^30, ±3·2^29 and −26 … 31, whose ties land on both parities, positive and negative. */
    ml_requantize(x32, 64, 1518500250, 38, -5, -128, 127, 1, y8);
    emit("requantize_even", y8, 64);
    ml_requantize(x32, 64, 2147483647, 31, 127, -128, 127, 1, y8);
    emit("requantize_even_saturate", y8, 64);
    ml_requantize(x32, 64, 1073741824, 62, 0, -128, 127, 1, y8); /* −2^31·2^30 / 2^62 = −0.5 → 0 */
    emit("requantize_even_t62", y8, 64);
    {
        int32_t *xt = x32 + 64;
        const int32_t ext[6] = { -2147483647 - 1, 2147483647, 1 << 30, -(1 << 30), 3 << 29, -(3 << 29) };
        for (int i = 0; i < 64; i++)
            xt[i] = i < 6 ? ext[i] : i - 32;
        ml_requantize(xt, 64, 1, 2, 0, -128, 127, 1, y8); /* x/4: 0.5 → 0, 1.5 → 2, −2.5 → −2 */
        emit("requantize_even_ties", y8, 64);
        ml_requantize(xt, 64, 1, 1, -10, -20, 0, 1, y8); /* x/2 − 10, both clamps */
        emit("requantize_even_clamp", y8, 64);
        ml_requantize(xt, 64, 1 << 30, 33, 0, -128, 127, 1, y8); /* x/8, v past 2^32 */
        emit("requantize_even_t33", y8, 64);
        ml_requantize(xt, 64, 1 << 30, 60, 0, -128, 127, 1, y8); /* x/2^30: ±3·2^29 → ±2 */
        emit("requantize_even_t60", y8, 64);
        ml_requantize(xt, 64, 1 << 30, 61, 0, -128, 127, 1, y8); /* x/2^31: ±2^30 → 0 */
        emit("requantize_even_t61", y8, 64);
    }

    /* requantize per channel: x32[64 … 127] (the extremes, then −26 … 31) as [16, 4] in both modes,
     * column 1 at x/2 and column 2 at x/4 all ties (x odd, x ≡ 2 mod 4); the same as [64] with 64 pairs;
     * columns 2 … 4 of x32[0 … 63] as [8, 8] (a piece of the table, as exec.c streams it), the other
     * columns of y8 left 0. */
    {
        static int32_t mt[2 * 64];
        const int32_t mt4[8] = { 1518500250, 38, 1, 1, 1, 2, 1 << 30, 60 };
        ml_requantize_channels(x32 + 64, 16, 4, 4, mt4, -5, -128, 127, 0, y8);
        emit("requantize_channels", y8, 64);
        ml_requantize_channels(x32 + 64, 16, 4, 4, mt4, -5, -128, 127, 1, y8);
        emit("requantize_channels_even", y8, 64);
        for (int c = 0; c < 64; c++) {
            mt[2 * c] = 1 + c * 33554431;
            mt[2 * c + 1] = 22 + c % 10;
        }
        ml_requantize_channels(x32 + 64, 1, 64, 64, mt, 3, -100, 100, 1, y8);
        emit("requantize_channels_m", y8, 64);
        memset(y8, 0, 64);
        ml_requantize_channels(x32 + 2, 8, 8, 3, mt4, 0, -128, 127, 1, y8 + 2);
        emit("requantize_channels_piece", y8, 64);
    }

    /* requantize mode 2 (float32 product, half to even; M0 < 2^24): the random accumulators and
     * x32[64 … 127]; xf = (i − 32)·2^23 + (i mod 5) − 2 at x/2^25, where fl(x) drops the low bits: ties
     * of fl(x)·2^−25 that mode 1 rounds by the dropped bits; per channel, crafted (x, M0, t) where the
     * float32 product (or fl(x)) lands on a tie (mode 1 and mode 2 differ), and [16, 4] over x32[64 …]. */
    {
        static int32_t xf[64];
        for (int i = 0; i < 64; i++)
            xf[i] = (i - 32) * (1 << 23) + i % 5 - 2;
        ml_requantize(x32, 64, 11863283, 31, -5, -128, 127, 2, y8);
        emit("requantize_f32", y8, 64);
        ml_requantize(x32 + 64, 64, (1 << 24) - 1, 26, 0, -128, 127, 2, y8);
        emit("requantize_f32_ext", y8, 64);
        ml_requantize(x32 + 64, 64, 3, 2, -10, -20, 0, 2, y8);
        emit("requantize_f32_clamp", y8, 64);
        ml_requantize(xf, 64, 1, 25, 0, -128, 127, 2, y8);
        emit("requantize_f32_ties", y8, 64);
        const int32_t xc[8] = { 83886081, -83886081, 445019, -445019, 91153, 1194144765, 4242, 2147483647 };
        const int32_t mc[16] = { 1, 25, 1, 25, 377, 26, 377, 26, 3313, 26, 1974093, 46, 158201, 28, 16777215, 55 };
        ml_requantize_channels(xc, 1, 8, 8, mc, 0, -128, 127, 2, y8);
        emit("requantize_channels_f32", y8, 8);
        const int32_t mf4[8] = { 11863283, 31, 1, 1, 5, 4, 1 << 23, 53 };
        ml_requantize_channels(x32 + 64, 16, 4, 4, mf4, -5, -128, 127, 2, y8);
        emit("requantize_channels_f32_4", y8, 64);
    }

    /* add: random and extreme operands. */
    fill_i8(xa, 100);
    fill_i8(xb, 100);
    xa[0] = -128;
    xb[0] = -128;
    xa[1] = 127;
    xb[1] = 127;
    {
        const int32_t p[8] = { -7, 1073741824, 12, 1518500250, 31, 3, -128, 127 };
        ml_add(xa, xb, 100, p, y8);
        emit("add", y8, 100);
        const int32_t q[8] = { 127, 2147483647, -128, 2147483647, 1, 0, -100, 100 };
        ml_add(xa, xb, 100, q, y8);
        emit("add_saturate", y8, 100);
    }

    /* relu on both dtypes. */
    ml_relu_i8(xa, 100, -3, y8);
    emit("relu_i8", y8, 100);
    ml_relu_i32(x32, 64, -1000, y32);
    emit("relu_i32", y32, 4 * 64);

    /* pools over 7×5×3, windows 3×2, strides (2, 2): floors of both dims. */
    fill_i8(xa, 7 * 5 * 3);
    {
        struct ml_pool pl = { .H = 7, .W = 5, .C = 3, .OH = 3, .OW = 2, .KH = 3, .KW = 2,
                              .sh = 2, .sw = 2 };
        ml_maxpool(xa, &pl, y8);
        emit("maxpool", y8, 3 * 2 * 3);
        ml_avgpool(xa, &pl, y8);
        emit("avgpool", y8, 3 * 2 * 3);
        for (int i = 0; i < 7 * 5 * 3; i++)
            xa[i] = -128;
        ml_avgpool(xa, &pl, y8);
        emit("avgpool_min", y8, 3 * 2 * 3);
    }

    /* argmax with ties (the first maximum wins). */
    fill_i8(xa, 50);
    xa[10] = 127;
    xa[30] = 127;
    {
        int32_t i8 = ml_argmax_i8(xa, 50);
        emit("argmax_i8", &i8, 4);
        x32[20] = 2147483647;
        x32[40] = 2147483647;
        int32_t i32 = ml_argmax_i32(x32, 64);
        emit("argmax_i32", &i32, 4);
    }

    /* lut over every int8 value. */
    fill_i8(w8, 256);
    for (int i = 0; i < 256; i++)
        xa[i] = (int8_t)(i - 128);
    ml_lut(xa, 256, w8, y8);
    emit("lut", y8, 256);

    /* softmax: a table 2^16·exp(−j/16)-like (decreasing, E[255] = 2^16), then all-zero. */
    for (int j = 0; j < 256; j++)
        table32[j] = (int32_t)((65536u >> ((255 - j) / 16)) - (uint32_t)(255 - j) % 16 * 7);
    table32[255] = 65536;
    fill_i8(xa, 40);
    ml_softmax(xa, 40, table32, y8);
    emit("softmax", y8, 40);
    for (int j = 0; j < 256; j++)
        table32[j] = 0;
    ml_softmax(xa, 40, table32, y8);
    emit("softmax_zero", y8, 40);
    return 0;
}
