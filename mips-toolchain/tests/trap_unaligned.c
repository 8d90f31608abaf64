/* An aligned-only lw at an address that is not a multiple of 4. */
#include "rt.h"

static uint32_t words[2] = {0x11223344u, 0x55667788u};

int main(void)
{
    uint32_t v;
    print_str("before unaligned lw\n");
    __asm__ __volatile__("lw %0, 1(%1)" : "=r"(v) : "r"(words) : "memory");
    print_str("not reached: ");
    print_hex32(v);
    print_nl();
    return 1;
}
