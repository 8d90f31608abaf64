# Entry point for freestanding static mipsel programs (o32, -G0, no PIC).
# Linux (and qemu-mipsel) enter _start with $sp -> argc, argv[0..], NULL, envp..., auxv.
# We pass argc/argv to main but the test programs do not use them: a VM loader
# that only sets $sp sees argc == 0, which is harmless.
    .text
    .globl  _start
    .type   _start, @function
    .ent    _start
    .set    noreorder
_start:
    lw      $a0, 0($sp)         # argc
    addiu   $a1, $sp, 4         # argv
    li      $t0, -8
    and     $sp, $sp, $t0       # o32 wants 8-byte alignment
    addiu   $sp, $sp, -16       # o32 argument save area for main's callee
    jal     main
    nop
    move    $a0, $v0            # exit code
    li      $v0, 4246           # exit_group
    syscall
1:  b       1b                  # not reached
    nop
    .set    reorder
    .end    _start
    .size   _start, .-_start
