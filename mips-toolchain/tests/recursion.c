/* Recursion: jal/jalr, stack frames, saved registers, delay slots. */
#include "rt.h"

__attribute__((noinline)) static uint32_t fib(uint32_t n)
{
    return n < 2 ? n : fib(n - 1) + fib(n - 2);
}

__attribute__((noinline)) static uint32_t ack(uint32_t m, uint32_t n)
{
    if (m == 0)
        return n + 1;
    if (n == 0)
        return ack(m - 1, 1);
    return ack(m - 1, ack(m, n - 1));
}

static uint32_t depth_max;
__attribute__((noinline)) static void quicksort(int32_t *a, int lo, int hi, uint32_t depth)
{
    if (depth > depth_max)
        depth_max = depth;
    if (lo >= hi)
        return;
    int32_t pivot = a[lo + (hi - lo) / 2];
    int i = lo, j = hi;
    while (i <= j) {
        while (a[i] < pivot) i++;
        while (a[j] > pivot) j--;
        if (i <= j) {
            int32_t t = a[i]; a[i] = a[j]; a[j] = t;
            i++; j--;
        }
    }
    quicksort(a, lo, j, depth + 1);
    quicksort(a, i, hi, depth + 1);
}

/* Called through a volatile function pointer, so GCC must use jalr. */
static uint32_t sum_to(uint32_t n);
static uint32_t (*volatile indirect)(uint32_t) = sum_to;
__attribute__((noinline)) static uint32_t sum_to(uint32_t n)
{
    return n == 0 ? 0 : n + indirect(n - 1);
}

/* Branch-and-link forms that GCC does not emit for non-PIC code. $ra must be
 * the branch address + 8 whether or not the branch is taken. Returns
 * 247 for x >= 0 and 191 for x < 0; bit 0x1000 or a missing bit = failure. */
__attribute__((noinline)) static uint32_t link_forms(int32_t x)
{
    uint32_t r;
    __asm__ __volatile__(
        ".set push\n\t.set noreorder\n\t"
        "li     %0, 0\n\t"
        "bal    1f\n\t"
        " addiu %0, %0, 1\n\t"         /* delay slot always runs */
        "0: addiu %0, %0, 0x1000\n\t"   /* skipped: we never return here */
        "1: la  $t0, 0b\n\t"
        "bne    $ra, $t0, 9f\n\t"
        " nop\n\t"
        "addiu  %0, %0, 2\n\t"
        "bgezal %1, 2f\n\t"
        " addiu %0, %0, 4\n\t"
        "3: addiu %0, %0, 8\n\t"        /* fall-through when x < 0 */
        "2: la  $t0, 3b\n\t"
        "bne    $ra, $t0, 9f\n\t"
        " nop\n\t"
        "addiu  %0, %0, 16\n\t"
        "bltzal %1, 4f\n\t"
        " addiu %0, %0, 32\n\t"
        "5: addiu %0, %0, 64\n\t"       /* fall-through when x >= 0 */
        "4: la  $t0, 5b\n\t"
        "bne    $ra, $t0, 9f\n\t"
        " nop\n\t"
        "addiu  %0, %0, 128\n\t"
        "9:\n\t"
        ".set pop"
        : "=&r"(r)
        : "r"(x)
        : "$8", "$31", "memory");
    return r;
}

static volatile int32_t plus5 = 5, minus5 = -5;

#define N 2000
static int32_t arr[N];

int main(void)
{
    uint32_t f = fib(24);
    print_str("fib(24) = "); print_u32(f); print_nl();
    print_str("ack(2,3) = "); print_u32(ack(2, 3)); print_nl();
    print_str("ack(3,5) = "); print_u32(ack(3, 5)); print_nl();
    print_str("link_forms(5) = "); print_u32(link_forms(plus5)); print_nl();
    print_str("link_forms(-5) = "); print_u32(link_forms(minus5)); print_nl();
    print_str("sum_to(3000) = "); print_u32(indirect(3000)); print_nl();

    uint32_t x = 12345;
    for (int i = 0; i < N; i++) {
        x = x * 1103515245u + 12345u;
        arr[i] = (int32_t)x >> 3;
    }
    quicksort(arr, 0, N - 1, 0);
    int sorted = 1;
    uint32_t h = 0;
    for (int i = 0; i < N; i++) {
        if (i && arr[i - 1] > arr[i])
            sorted = 0;
        h = h * 31 + (uint32_t)arr[i];
    }
    print_str("sorted = "); print_u32(sorted); print_nl();
    print_str("min = "); print_i32(arr[0]); print_nl();
    print_str("max = "); print_i32(arr[N - 1]); print_nl();
    print_str("hash = "); print_hex32(h); print_nl();
    print_str("depth_max = "); print_u32(depth_max); print_nl();
    return (int)(f & 0xff);   /* 46368 & 0xff = 32 */
}
