/* 64-bit division by zero inside libgcc's __udivdi3 (it divides by zero on
 * purpose, so its divu/teq 7 fires). */
#include "rt.h"

static volatile uint64_t num = 0x123456789ull, den = 0;

int main(void)
{
    print_str("dividing 64-bit by zero\n");
    uint64_t q = num / den;
    print_str("not reached: ");
    print_u64(q);
    print_nl();
    return 1;
}
