#include "rt.h"

int main(void)
{
    print_str("hello from mipsel\n");
    print_str_fd(2, "hello on stderr\n");
    return 3;
}
