/* 32-bit integer edge cases: wraparound, shifts, comparisons, 64-bit
 * products (mult/multu, madd/maddu/msub/msubu), clz/clo, conditional moves
 * (movz/movn), sub-word loads and stores, hi/lo moves. */
#include "rt.h"

#define NV 16
static volatile int32_t sv[NV] = {
    0, 1, -1, 2, -2, 31, 32, 0x7fffffff, (int32_t)0x80000000, (int32_t)0x80000001,
    0x12345678, (int32_t)0x9abcdef0, 255, -256, 65535, -65536,
};
static volatile int32_t vshift[6] = {0, 1, 5, 16, 31, 32};

static uint32_t h = 2166136261u;
static void mix(uint32_t v) { h = (h ^ v) * 16777619u; }

static void show(const char *name, uint32_t v)
{
    print_str(name);
    print_char(' ');
    print_hex32(v);
    print_nl();
    mix(v);
}

static void show64(const char *name, uint64_t v)
{
    print_str(name);
    print_char(' ');
    print_hex64(v);
    print_nl();
    mix((uint32_t)v);
    mix((uint32_t)(v >> 32));
}

__attribute__((noinline)) static int64_t dot_s(const volatile int32_t *a, const volatile int32_t *b, int n)
{
    int64_t acc = 0;
    for (int i = 0; i < n; i++)
        acc += (int64_t)a[i] * b[i];
    return acc;
}
__attribute__((noinline)) static int64_t dot_s_sub(int64_t acc, const volatile int32_t *a, const volatile int32_t *b, int n)
{
    for (int i = 0; i < n; i++)
        acc -= (int64_t)a[i] * b[i];
    return acc;
}
__attribute__((noinline)) static uint64_t dot_u(uint64_t acc, const volatile int32_t *a, const volatile int32_t *b, int n)
{
    for (int i = 0; i < n; i++)
        acc += (uint64_t)(uint32_t)a[i] * (uint32_t)b[i];
    return acc;
}
__attribute__((noinline)) static uint64_t dot_u_sub(uint64_t acc, const volatile int32_t *a, const volatile int32_t *b, int n)
{
    for (int i = 0; i < n; i++)
        acc -= (uint64_t)(uint32_t)a[i] * (uint32_t)b[i];
    return acc;
}

/* GCC emits madd/msub for the C loops above; these make sure every
 * form appears even if GCC's choices change. */
__attribute__((noinline)) static uint64_t asm_madd(uint64_t acc, uint32_t a, uint32_t b, int op)
{
    uint32_t hi = (uint32_t)(acc >> 32), lo = (uint32_t)acc;
    __asm__("mthi %0\n\tmtlo %1" : : "r"(hi), "r"(lo) : "hi", "lo");
    switch (op) {
    case 0: __asm__("madd %0, %1" : : "r"(a), "r"(b) : "hi", "lo"); break;
    case 1: __asm__("maddu %0, %1" : : "r"(a), "r"(b) : "hi", "lo"); break;
    case 2: __asm__("msub %0, %1" : : "r"(a), "r"(b) : "hi", "lo"); break;
    default: __asm__("msubu %0, %1" : : "r"(a), "r"(b) : "hi", "lo"); break;
    }
    __asm__("mfhi %0\n\tmflo %1" : "=r"(hi), "=r"(lo));
    return ((uint64_t)hi << 32) | lo;
}

__attribute__((noinline)) static uint32_t clz_asm(uint32_t x)
{
    uint32_t r;
    __asm__("clz %0, %1" : "=r"(r) : "r"(x));
    return r;
}
__attribute__((noinline)) static uint32_t clo_asm(uint32_t x)
{
    uint32_t r;
    __asm__("clo %0, %1" : "=r"(r) : "r"(x));
    return r;
}

__attribute__((noinline)) static int32_t sel_z(int32_t c, int32_t a, int32_t b)
{
    return c == 0 ? a : b;
}
__attribute__((noinline)) static int32_t sel_lt(int32_t x, int32_t y, int32_t a, int32_t b)
{
    return x < y ? a : b;
}
__attribute__((noinline)) static int32_t smax(int32_t a, int32_t b)
{
    return a > b ? a : b;
}
__attribute__((noinline)) static uint32_t umin(uint32_t a, uint32_t b)
{
    return a < b ? a : b;
}

static uint8_t bytes[16] __attribute__((aligned(4)));
static volatile int vi;

int main(void)
{
    char name[32];
    int i, j;

    /* wraparound add/sub/mul */
    for (i = 0; i < NV; i++) {
        int32_t a = sv[i], b = sv[(i * 7 + 3) % NV];
        mix((uint32_t)a + (uint32_t)b);
        mix((uint32_t)a - (uint32_t)b);
        mix((uint32_t)a * (uint32_t)b);
        mix(~(uint32_t)a);
        mix(-(uint32_t)a);
        mix((uint32_t)(a & b) ^ (uint32_t)(a | b));
        mix(~((uint32_t)a | (uint32_t)b));      /* nor */
        mix((uint32_t)a ^ 0x5a5aa5a5u);
        mix((uint32_t)a & 0xffffu);             /* andi */
        mix((uint32_t)a | 0x8000u);             /* ori */
        mix((uint32_t)a ^ 0x00ffu);             /* xori */
    }
    show("arith", h);

    /* shifts: constant and variable, logical and arithmetic */
    for (i = 0; i < NV; i++) {
        uint32_t u = (uint32_t)sv[i];
        int32_t s = sv[i];
        mix(u << 0); mix(u << 31); mix(u >> 0); mix(u >> 31);
        mix((uint32_t)(s >> 0)); mix((uint32_t)(s >> 31)); mix((uint32_t)(s >> 7));
        for (j = 0; j < 5; j++) {
            int k = vshift[j];
            mix(u << k);
            mix(u >> k);
            mix((uint32_t)(s >> k));
        }
        /* MIPS uses only the low 5 bits of the shift amount (k=32 -> 0);
         * C says that is undefined, so do it explicitly. */
        int k = vshift[5] & 31;
        mix(u << k);
    }
    show("shifts", h);

    /* signed and unsigned comparisons: slt/sltu/slti/sltiu */
    for (i = 0; i < NV; i++)
        for (j = 0; j < NV; j++) {
            int32_t a = sv[i], b = sv[j];
            uint32_t r = (uint32_t)(a < b) | (uint32_t)((uint32_t)a < (uint32_t)b) << 1 |
                         (uint32_t)(a < 100) << 2 | (uint32_t)((uint32_t)a < 100u) << 3 |
                         (uint32_t)(a < -5) << 4 | (uint32_t)((uint32_t)a < 0xfffffff0u) << 5 |
                         (uint32_t)(a == b) << 6 | (uint32_t)(a >= b) << 7;
            mix(r);
        }
    show("compare", h);

    /* 64-bit products */
    for (i = 0; i < NV; i++)
        for (j = 0; j < NV; j += 3) {
            int32_t a = sv[i], b = sv[j];
            mix((uint32_t)(((int64_t)a * b) >> 32));
            mix((uint32_t)(((uint64_t)(uint32_t)a * (uint32_t)b) >> 32));
            mix((uint32_t)((int64_t)a * b));
        }
    show("mult", h);
    show64("smul_min", (uint64_t)((int64_t)sv[8] * sv[8]));
    show64("smul_minmax", (uint64_t)((int64_t)sv[8] * sv[7]));
    show64("umul_max", (uint64_t)(uint32_t)sv[2] * (uint32_t)sv[2]);

    /* multiply-accumulate */
    int64_t ds = dot_s(sv, sv + 3, NV - 3);
    show64("madd", (uint64_t)ds);
    show64("msub", (uint64_t)dot_s_sub(ds, sv + 1, sv + 2, NV - 2));
    uint64_t du = dot_u(0x0123456789abcdefull, sv, sv + 5, NV - 5);
    show64("maddu", du);
    show64("msubu", dot_u_sub(du, sv, sv, NV));
    for (i = 0; i < 4; i++) {
        name[0] = 'a'; name[1] = 's'; name[2] = 'm'; name[3] = (char)('0' + i); name[4] = 0;
        show64(name, asm_madd(0xfedcba9876543210ull, (uint32_t)sv[7], (uint32_t)sv[9], i));
    }

    /* clz / clo */
    for (i = 0; i < NV; i++) {
        uint32_t u = (uint32_t)sv[i];
        mix(u ? (uint32_t)__builtin_clz(u) : 32u);
        mix(~u ? (uint32_t)__builtin_clz(~u) : 32u);
        mix(clz_asm(u));
        mix(clo_asm(u));
    }
    show("clz", h);
    show("clz0", clz_asm(0));
    show("clo_ones", clo_asm(0xffffffffu));

    /* conditional selects */
    for (i = 0; i < NV; i++)
        for (j = 0; j < NV; j += 5) {
            mix((uint32_t)sel_z(sv[i], sv[j], 77));
            mix((uint32_t)sel_lt(sv[i], sv[j], -3, sv[j]));
            mix((uint32_t)smax(sv[i], sv[j]));
            mix(umin((uint32_t)sv[i], (uint32_t)sv[j]));
        }
    show("select", h);

    /* sub-word loads and stores: sign and zero extension */
    for (i = 0; i < 16; i++)
        bytes[i] = (uint8_t)(0x70 + i * 9);
    for (i = 0; i < 16; i++) {
        vi = i;
        int k = vi;
        mix((uint32_t)(int32_t)(int8_t)bytes[k]);      /* lb */
        mix((uint32_t)bytes[k]);                       /* lbu */
        if (k < 15) {
            int16_t sh;
            uint16_t uh;
            __builtin_memcpy(&sh, bytes + (k & ~1), 2);
            __builtin_memcpy(&uh, bytes + (k & ~1), 2);
            mix((uint32_t)(int32_t)sh);                /* lh */
            mix((uint32_t)uh);                         /* lhu */
        }
    }
    show("subword_load", h);
    volatile int8_t *sb = (volatile int8_t *)bytes;
    volatile int16_t *shp = (volatile int16_t *)bytes;
    sb[3] = (int8_t)sv[2];          /* sb of -1 */
    sb[5] = (int8_t)sv[12];         /* sb of 255 -> 0xff */
    shp[4] = (int16_t)sv[14];       /* sh of 65535 */
    shp[6] = (int16_t)sv[10];       /* sh of 0x5678 */
    show("bytes0", ((uint32_t *)bytes)[0]);
    show("bytes1", ((uint32_t *)bytes)[1]);
    show("bytes2", ((uint32_t *)bytes)[2]);
    show("bytes3", ((uint32_t *)bytes)[3]);
    show("sb_reload", (uint32_t)(int32_t)sb[3]);
    show("sh_reload", (uint32_t)(int32_t)shp[4]);

    uint32_t fin = h;
    show("final", fin);
    return (int)(fin % 200) + 50;
}
