/* Unaligned word and doubleword access through packed structs and memcpy,
 * which GCC compiles to lwl/lwr and swl/swr on MIPS32. */
#include "rt.h"

struct __attribute__((packed)) u32p { uint32_t v; };
struct __attribute__((packed)) u64p { uint64_t v; };
struct __attribute__((packed)) u16p { uint16_t v; };
struct __attribute__((packed)) rec {
    uint8_t tag;
    uint32_t a;
    int16_t b;
    int32_t c;
    uint64_t d;
};

static uint8_t buf[64] __attribute__((aligned(8)));
/* The offset is read through a volatile so GCC cannot prove alignment. */
static volatile int voff;

__attribute__((noinline)) static uint32_t load32(const uint8_t *p)
{
    return ((const struct u32p *)p)->v;
}
__attribute__((noinline)) static void store32(uint8_t *p, uint32_t v)
{
    ((struct u32p *)p)->v = v;
}
__attribute__((noinline)) static uint64_t load64(const uint8_t *p)
{
    return ((const struct u64p *)p)->v;
}
__attribute__((noinline)) static void store64(uint8_t *p, uint64_t v)
{
    ((struct u64p *)p)->v = v;
}
__attribute__((noinline)) static uint16_t load16(const uint8_t *p)
{
    return ((const struct u16p *)p)->v;
}
__attribute__((noinline)) static uint32_t load32_memcpy(const uint8_t *p)
{
    uint32_t v;
    __builtin_memcpy(&v, p, 4);
    return v;
}
__attribute__((noinline)) static void store32_memcpy(uint8_t *p, uint32_t v)
{
    __builtin_memcpy(p, &v, 4);
}

static void reset(void)
{
    for (int i = 0; i < 64; i++)
        buf[i] = (uint8_t)(i * 17 + 1);
}

static void dump(void)
{
    for (int i = 0; i < 24; i++) {
        print_char("0123456789abcdef"[buf[i] >> 4]);
        print_char("0123456789abcdef"[buf[i] & 15]);
    }
    print_nl();
}

int main(void)
{
    uint32_t acc = 0;
    reset();
    for (int o = 0; o < 8; o++) {
        voff = o;
        int off = voff;
        uint32_t w = load32(buf + off);
        uint32_t m = load32_memcpy(buf + off);
        uint64_t d = load64(buf + off);
        uint16_t h = load16(buf + off);
        print_str("load off="); print_u32(o);
        print_char(' '); print_hex32(w);
        print_char(' '); print_hex32(m);
        print_char(' '); print_hex64(d);
        print_char(' '); print_hex32(h);
        print_nl();
        acc += w ^ (uint32_t)d ^ (uint32_t)(d >> 32) ^ h;
    }
    for (int o = 0; o < 8; o++) {
        voff = o;
        int off = voff;
        reset();
        store32(buf + off, 0xa1b2c3d4u);
        print_str("store32 off="); print_u32(o); print_char(' '); dump();
        reset();
        store32_memcpy(buf + off + 8, 0x11223344u);
        store64(buf + off, 0x0102030405060708ull);
        print_str("store64 off="); print_u32(o); print_char(' '); dump();
    }

    /* A packed record laid over the buffer at an odd address. */
    reset();
    voff = 1;
    struct rec *r = (struct rec *)(buf + voff);
    r->a = 0xdeadbeefu;
    r->b = -2;
    r->c = -123456789;
    r->d = 0x8877665544332211ull;
    r->a += 1;
    r->c -= 1;
    print_str("rec "); print_hex32(r->a); print_char(' ');
    print_i32(r->b); print_char(' '); print_i32(r->c); print_char(' ');
    print_hex64(r->d); print_nl();
    print_str("rec bytes "); dump();
    acc += r->a + (uint32_t)r->c;
    print_str("acc "); print_hex32(acc); print_nl();
    return (int)(acc % 200) + 10;
}
