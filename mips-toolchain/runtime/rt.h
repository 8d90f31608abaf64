#ifndef OPML_RT_H
#define OPML_RT_H
/* Minimal freestanding runtime: no libc, no floating point. */
#include <stddef.h>
#include <stdint.h>
#include "syscall.h"

/* GCC may emit calls to these even with -ffreestanding (struct copies,
 * loops it recognises as memset/memcpy), so they must exist. */
void *memcpy(void *dst, const void *src, size_t n);
void *memmove(void *dst, const void *src, size_t n);
void *memset(void *dst, int c, size_t n);
int memcmp(const void *a, const void *b, size_t n);
size_t strlen(const char *s);

/* Output to fd 1 (stdout). The *_fd variants take a file descriptor. */
void print_str_fd(int fd, const char *s);
void print_str(const char *s);
void print_char(char c);
void print_u32(uint32_t v);
void print_i32(int32_t v);
void print_hex32(uint32_t v);   /* 0x%08x */
void print_u64(uint64_t v);     /* uses __udivdi3/__umoddi3 from libgcc */
void print_i64(int64_t v);
void print_hex64(uint64_t v);   /* 0x%016x */
void print_nl(void);

#endif
