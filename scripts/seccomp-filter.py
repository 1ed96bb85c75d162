#!/usr/bin/python3
"""Writes the local sandbox's seccomp filter, as BPF for bwrap --seccomp, to the file named.

Generated with libseccomp's own Python bindings (Debian: python3-seccomp) rather than written
as raw BPF. Everything is allowed except what a sandboxed agent never needs and what widens the
kernel's attack surface: new namespaces, mounts, tracing other processes, the keyring, BPF, perf,
userfaultfd, io_uring, loading kernels or modules. Syscalls of other ABIs (i386, x32) are killed
by libseccomp's bad-architecture action, so they cannot be used to slip past these rules.
"""
import errno
import sys

import seccomp

CLONE_NEW_FLAGS = {
    "CLONE_NEWTIME": 0x00000080,
    "CLONE_NEWNS": 0x00020000,
    "CLONE_NEWCGROUP": 0x02000000,
    "CLONE_NEWUTS": 0x04000000,
    "CLONE_NEWIPC": 0x08000000,
    "CLONE_NEWUSER": 0x10000000,
    "CLONE_NEWPID": 0x20000000,
    "CLONE_NEWNET": 0x40000000,
}

REFUSED = [
    # namespaces
    "unshare", "setns",
    # mounts, old and new API
    "mount", "umount2", "pivot_root", "fsopen", "fsconfig", "fsmount", "fspick", "move_mount",
    "open_tree", "mount_setattr",
    # reading or steering other processes
    "ptrace", "process_vm_readv", "process_vm_writev", "pidfd_getfd",
    # the kernel keyring
    "keyctl", "add_key", "request_key",
    # kernel programs and observability
    "bpf", "perf_event_open", "userfaultfd",
    # replacing the kernel or extending it
    "kexec_load", "kexec_file_load", "init_module", "finit_module", "delete_module",
    # io_uring bypasses seccomp for the operations it carries
    "io_uring_setup", "io_uring_enter", "io_uring_register",
    # file handles open any file of a filesystem, whatever the mount shows
    "open_by_handle_at", "name_to_handle_at",
]

# Newer than libseccomp 2.5's syscall table: refused by number (x86_64).
REFUSED_BY_NUMBER_X86_64 = {"open_tree_attr": 467}

TIOCSTI = 0x5412
TIOCLINUX = 0x541C
AF_VSOCK = 40


def build():
    f = seccomp.SyscallFilter(defaction=seccomp.ALLOW)
    deny = seccomp.ERRNO(errno.EPERM)
    for name in REFUSED:
        f.add_rule(deny, name)
    if seccomp.system_arch() == seccomp.Arch.X86_64:
        for number in REFUSED_BY_NUMBER_X86_64.values():
            f.add_rule(deny, number)
    # clone3 passes its flags in memory, where a filter cannot look: answering ENOSYS makes
    # glibc and others fall back to clone, whose flags are checked below.
    f.add_rule(seccomp.ERRNO(errno.ENOSYS), "clone3")
    for flag in CLONE_NEW_FLAGS.values():
        f.add_rule(deny, "clone", seccomp.Arg(0, seccomp.MASKED_EQ, flag, flag))
    # Typing into the terminal of whoever started the sandbox.
    for request in (TIOCSTI, TIOCLINUX):
        f.add_rule(deny, "ioctl", seccomp.Arg(1, seccomp.MASKED_EQ, 0xFFFFFFFF, request))
    # vsock is not confined by network namespaces: in a VM it reaches the hypervisor's host. The
    # kernel reads the family as an int, so only its low 32 bits may be compared: a family with
    # high bits set is still AF_VSOCK to the kernel.
    f.add_rule(seccomp.ERRNO(errno.EAFNOSUPPORT), "socket", seccomp.Arg(0, seccomp.MASKED_EQ, 0xFFFFFFFF, AF_VSOCK))
    return f


def main():
    if len(sys.argv) != 2:
        sys.exit("usage: seccomp-filter.py <output.bpf>")
    with open(sys.argv[1], "wb") as out:
        build().export_bpf(out)


if __name__ == "__main__":
    main()
