#include "rt.h"

/* Stop GCC from recognising the loops below as memcpy/memset and turning
 * them into calls to themselves (-ftree-loop-distribute-patterns is on at -O2). */
#define NO_LIBCALL __attribute__((optimize("no-tree-loop-distribute-patterns")))

NO_LIBCALL void *memcpy(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    while (n--)
        *d++ = *s++;
    return dst;
}

NO_LIBCALL void *memmove(void *dst, const void *src, size_t n)
{
    unsigned char *d = dst;
    const unsigned char *s = src;
    if (d < s) {
        while (n--)
            *d++ = *s++;
    } else {
        while (n--)
            d[n] = s[n];
    }
    return dst;
}

NO_LIBCALL void *memset(void *dst, int c, size_t n)
{
    unsigned char *d = dst;
    while (n--)
        *d++ = (unsigned char)c;
    return dst;
}

int memcmp(const void *a, const void *b, size_t n)
{
    const unsigned char *x = a, *y = b;
    for (; n; n--, x++, y++)
        if (*x != *y)
            return *x - *y;
    return 0;
}

NO_LIBCALL size_t strlen(const char *s)
{
    const char *p = s;
    while (*p)
        p++;
    return (size_t)(p - s);
}

void print_str_fd(int fd, const char *s)
{
    sys_write(fd, s, strlen(s));
}

void print_str(const char *s) { print_str_fd(1, s); }

void print_char(char c) { sys_write(1, &c, 1); }

void print_nl(void) { print_char('\n'); }

void print_u32(uint32_t v)
{
    char buf[11];
    int i = 10;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + v % 10);
        v /= 10;
    } while (v);
    print_str(buf + i);
}

void print_i32(int32_t v)
{
    if (v < 0) {
        print_char('-');
        print_u32(0u - (uint32_t)v);
    } else {
        print_u32((uint32_t)v);
    }
}

static const char hexdigits[] = "0123456789abcdef";

void print_hex32(uint32_t v)
{
    char buf[11];
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 8; i++)
        buf[2 + i] = hexdigits[(v >> (28 - 4 * i)) & 0xf];
    buf[10] = 0;
    print_str(buf);
}

void print_u64(uint64_t v)
{
    char buf[21];
    int i = 20;
    buf[i] = 0;
    do {
        buf[--i] = (char)('0' + (int)(v % 10));
        v /= 10;
    } while (v);
    print_str(buf + i);
}

void print_i64(int64_t v)
{
    if (v < 0) {
        print_char('-');
        print_u64(0ull - (uint64_t)v);
    } else {
        print_u64((uint64_t)v);
    }
}

void print_hex64(uint64_t v)
{
    char buf[19];
    buf[0] = '0';
    buf[1] = 'x';
    for (int i = 0; i < 16; i++)
        buf[2 + i] = hexdigits[(v >> (60 - 4 * i)) & 0xf];
    buf[18] = 0;
    print_str(buf);
}
