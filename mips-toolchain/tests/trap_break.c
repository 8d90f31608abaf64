/* The break instruction (code 0). */
#include "rt.h"

int main(void)
{
    print_str("before break\n");
    __asm__ __volatile__("break");
    print_str("not reached\n");
    return 1;
}
