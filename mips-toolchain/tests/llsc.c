/* Atomic builtins: GCC emits ll/sc retry loops (with sync) on MIPS32. */
#include "rt.h"

static volatile int32_t counter;
static volatile uint32_t flags;
static volatile uint8_t small[4];
static volatile uint16_t half[2];

int main(void)
{
    int32_t old_sum = 0;
    for (int i = 1; i <= 100; i++)
        old_sum += __atomic_fetch_add(&counter, i, __ATOMIC_SEQ_CST);
    print_str("counter "); print_i32(counter);
    print_str(" old_sum "); print_i32(old_sum); print_nl();

    int32_t after = __sync_sub_and_fetch(&counter, 50);
    print_str("sub_and_fetch "); print_i32(after); print_nl();

    flags = 0xf0f0f0f0u;
    uint32_t o1 = __sync_fetch_and_or(&flags, 0x0000ffffu);
    uint32_t o2 = __sync_fetch_and_and(&flags, 0x00ffff00u);
    uint32_t o3 = __sync_fetch_and_xor(&flags, 0x12345678u);
    uint32_t o4 = __atomic_fetch_nand(&flags, 0x0ff00ff0u, __ATOMIC_RELAXED);
    print_str("bitops "); print_hex32(o1); print_char(' '); print_hex32(o2);
    print_char(' '); print_hex32(o3); print_char(' '); print_hex32(o4);
    print_char(' '); print_hex32(flags); print_nl();

    int32_t exp = 5000;
    int ok1 = __atomic_compare_exchange_n(&counter, &exp, 7, 0,
                                          __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    int32_t seen = exp;
    int ok2 = __atomic_compare_exchange_n(&counter, &exp, 7, 0,
                                          __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST);
    print_str("cas "); print_i32(ok1); print_char(' '); print_i32(seen);
    print_char(' '); print_i32(ok2); print_char(' '); print_i32(counter); print_nl();

    int32_t prev = __atomic_exchange_n(&counter, -1, __ATOMIC_ACQ_REL);
    int32_t v = __sync_val_compare_and_swap(&counter, -1, 99);
    print_str("xchg "); print_i32(prev); print_char(' '); print_i32(v);
    print_char(' '); print_i32(counter); print_nl();

    /* Sub-word atomics: ll/sc on the containing word with masks. */
    for (int i = 0; i < 300; i++)
        __atomic_fetch_add(&small[i & 3], (uint8_t)(i + 1), __ATOMIC_SEQ_CST);
    for (int i = 0; i < 300; i++)
        __atomic_fetch_sub(&half[i & 1], (uint16_t)(i * 7), __ATOMIC_SEQ_CST);
    print_str("bytes ");
    for (int i = 0; i < 4; i++) { print_u32(small[i]); print_char(' '); }
    print_str("halves ");
    print_u32(half[0]); print_char(' '); print_u32(half[1]); print_nl();

    __sync_synchronize();
    return (counter + small[0] + half[1]) & 0xff;
}
