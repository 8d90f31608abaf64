/* 32-bit signed division by zero: GCC guards div with `teq $divisor,$zero,7`. */
#include "rt.h"

static volatile int32_t num = 1234, den = 0;

int main(void)
{
    print_str("dividing by zero\n");
    int32_t q = num / den;
    print_str("not reached: ");
    print_i32(q);
    print_nl();
    return 1;
}
