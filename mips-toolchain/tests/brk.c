/* Heap growth with brk and anonymous mmap. Only address-independent facts
 * are printed: the initial break's exact value differs between Linux, qemu
 * and a VM loader. */
#include "rt.h"

#define PAGE 4096u

static uint32_t fill_and_sum(volatile uint32_t *p, uint32_t nwords, uint32_t seed)
{
    uint32_t zero = 1, sum = 0;
    for (uint32_t i = 0; i < nwords; i++)
        if (p[i] != 0)
            zero = 0;
    for (uint32_t i = 0; i < nwords; i++)
        p[i] = seed + i * 2654435761u;
    for (uint32_t i = 0; i < nwords; i++)
        sum = (sum ^ p[i]) * 16777619u;
    return sum ^ (zero ? 0 : 0xdead0000u);
}

extern char _end[];

int main(void)
{
    int code = 0;
    unsigned long cur = sys_brk(0);
    print_str("brk(0) at or above _end: ");
    print_u32(cur >= (unsigned long)_end);
    print_nl();

    unsigned long want = cur + 3 * PAGE + 100;
    unsigned long got = sys_brk(want);
    print_str("brk grow ok: ");
    print_u32(got >= want);
    print_nl();
    if (got >= want) {
        /* fresh heap memory must read as zero */
        uint32_t s = fill_and_sum((volatile uint32_t *)cur, (3 * PAGE + 100) / 4, 17);
        print_str("brk checksum: ");
        print_hex32(s);
        print_nl();
        code += 1;
    }
    unsigned long back = sys_brk(cur);
    print_str("brk shrink ok: ");
    print_u32(back == cur);
    print_nl();

    void *m = sys_mmap_anon(0, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE);
    long mr = (long)m;
    int mok = !(mr < 0 && mr > -4096);
    print_str("mmap ok: ");
    print_u32(mok);
    print_nl();
    if (mok) {
        print_str("mmap page aligned: ");
        print_u32(((unsigned long)m & (PAGE - 1)) == 0);
        print_nl();
        uint32_t s = fill_and_sum((volatile uint32_t *)m, 2 * PAGE / 4, 99);
        print_str("mmap checksum: ");
        print_hex32(s);
        print_nl();
        code += 2;
    }

    /* mmap without MAP_PRIVATE/MAP_SHARED is invalid: expect -EINVAL (22) */
    long bad = (long)sys_mmap_anon(0, PAGE, PROT_READ, 0);
    print_str("mmap bad flags errno: ");
    print_i32((int32_t)-bad);
    print_nl();
    return code + 40;
}
