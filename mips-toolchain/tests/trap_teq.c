/* A conditional trap with a code other than 7 (divide by zero). */
#include "rt.h"

int main(void)
{
    print_str("before teq 5\n");
    __asm__ __volatile__("teq $zero, $zero, 5");
    print_str("not reached\n");
    return 1;
}
