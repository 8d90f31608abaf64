/* 64-bit signed/unsigned division and modulo through libgcc's __divdi3,
 * __udivdi3, __moddi3 and __umoddi3. Every result is printed so that the
 * host test can recompute it in Python. */
#include "rt.h"

static const uint64_t edge_init[] = {
    0, 1, 2, 3, 7, 10, 255, 256,
    0x7fffffffull, 0x80000000ull, 0xffffffffull, 0x100000000ull,
    0x100000001ull, 0x123456789abcdefull, 0x7fffffffffffffffull,
    0x8000000000000000ull, 0x8000000000000001ull, 0xffffffffffffffffull,
    0xfffffffffffffffeull, 0xfffffffffffffff9ull, 0xffffffff00000000ull,
    0xffffffff80000000ull, 1000000007ull, 0x4000000000000000ull,
    0x0000000100000000ull << 20,
};
#define NEDGE (sizeof(edge_init) / sizeof(edge_init[0]))

/* volatile so that GCC cannot fold or specialise the divisions */
static volatile uint64_t edge[NEDGE];
static volatile uint64_t va, vb;

static uint64_t lcg_state = 0x0123456789abcdefull;
static uint64_t lcg(void)
{
    lcg_state = lcg_state * 6364136223846793005ull + 1442695040888963407ull;
    return lcg_state;
}

static uint32_t checksum;
static void mix(uint64_t v)
{
    checksum = (checksum ^ (uint32_t)v ^ (uint32_t)(v >> 32)) * 16777619u;
}

static void one(uint64_t a, uint64_t b)
{
    va = a;
    vb = b;
    uint64_t ua = va, ub = vb;
    int64_t sa = (int64_t)va, sb = (int64_t)vb;
    uint64_t uq = ua / ub, ur = ua % ub;
    print_hex64(a); print_char(' ');
    print_hex64(b); print_char(' ');
    print_hex64(uq); print_char(' ');
    print_hex64(ur);
    mix(uq);
    mix(ur);
    /* INT64_MIN / -1 overflows (undefined in C): skip the signed pair. */
    if (!(sa == INT64_MIN && sb == -1)) {
        int64_t sq = sa / sb, sr = sa % sb;
        print_char(' '); print_i64(sq);
        print_char(' '); print_i64(sr);
        mix((uint64_t)sq);
        mix((uint64_t)sr);
    }
    print_nl();
}

int main(void)
{
    unsigned i, j, n = 0;
    checksum = 2166136261u;
    for (i = 0; i < NEDGE; i++)
        edge[i] = edge_init[i];

    for (i = 0; i < NEDGE; i++)
        for (j = 0; j < NEDGE; j++)
            if (edge[j] != 0) {
                one(edge[i], edge[j]);
                n++;
            }
    /* powers of two against each other */
    for (i = 0; i < 64; i += 5)
        for (j = 0; j < 64; j += 9) {
            one(1ull << i, 1ull << j);
            one(~0ull << i, 1ull << j);
            n += 2;
        }
    /* random-looking operands, with divisors of varied widths */
    for (i = 0; i < 200; i++) {
        uint64_t a = lcg();
        uint64_t b = lcg();
        b >>= lcg() & 63;
        if (b == 0)
            b = 3;
        one(a, b);
        n++;
    }
    print_str("pairs ");
    print_u32(n);
    print_str(" checksum ");
    print_hex32(checksum);
    print_nl();
    return (int)(checksum & 0x7f) + 1;
}
