/* A reserved encoding: primary opcode 0x3b (111011) is reserved on
 * MIPS32 before release 6. */
#include "rt.h"

int main(void)
{
    print_str("before illegal instruction\n");
    __asm__ __volatile__(".word 0xec000000");
    print_str("not reached\n");
    return 1;
}
