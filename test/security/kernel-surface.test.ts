import { describe, expect, it } from 'vitest';
import { useServiceWithFake } from '../support/service.js';
import { commandOutput } from '../support/in-sandbox.js';

/** Runs a raw syscall from perl and prints `<label>=ok`, `<label>=EPERM` (or another errno's name or number). */
const perlSyscall = (label: string, call: string) =>
  `perl -e 'my ($n, @a) = (${call}); my $r = syscall($n, @a); my $e = $! + 0; ` +
  `my %name = (1 => "EPERM", 2 => "ENOENT", 9 => "EBADF", 14 => "EFAULT", 22 => "EINVAL", 38 => "ENOSYS"); ` +
  `print "${label}=", ($r == -1 ? ($name{$e} // "errno$e") : "ok"), "\\n"'`;

describe("the sandbox's kernel surface (seccomp)", () => {
  const running = useServiceWithFake({});

  it('refuses new namespaces: unshare, clone with CLONE_NEW* flags, and clone3 answers ENOSYS', async () => {
    const output = await commandOutput(
      running.service,
      [
        'unshare -Ur true; echo "userns=$?"',
        'unshare -m true; echo "mountns=$?"',
        'unshare -Urm sh -c "mount -t tmpfs none /mnt && echo MOUNTED"; echo "userns_mount=$?"',
        perlSyscall('clone_newuser', '56, 0x10000000 | 17, 0, 0, 0, 0'), // clone(CLONE_NEWUSER | SIGCHLD)
        perlSyscall('clone3', '435, 0, 0'),
        perlSyscall('setns', '308, 0, 0'),
      ].join('; '),
    );
    expect(output).toMatch(/userns=[1-9]/);
    expect(output).toMatch(/mountns=[1-9]/);
    expect(output).toMatch(/userns_mount=[1-9]/);
    expect(output).not.toContain('MOUNTED');
    expect(output).toContain('clone_newuser=EPERM');
    expect(output).toContain('clone3=ENOSYS');
    expect(output).toContain('setns=EPERM');
  });

  it('refuses mount, keyctl, bpf, ptrace, userfaultfd, io_uring and perf with EPERM', async () => {
    const python = (label: string, code: string) =>
      `python3 -c "import ctypes, errno; libc = ctypes.CDLL(None, use_errno=True); r = ${code}; print('${label}=' + ('ok' if r >= 0 else errno.errorcode[ctypes.get_errno()]))"`;
    const output = await commandOutput(
      running.service,
      [
        'mkdir -p /tmp/m',
        python('py_mount', "libc.mount(b'none', b'/tmp/m', b'tmpfs', 0, None)"),
        python('py_keyctl', 'libc.syscall(250, 0, -3, 0)'), // KEYCTL_GET_KEYRING_ID of the session keyring
        perlSyscall('keyctl', '250, 0, -3, 0'),
        perlSyscall('add_key', '248, "user", "k", "v", 1, -3'),
        perlSyscall('bpf', '321, 0, 0, 0'),
        perlSyscall('ptrace', '101, 0, 0, 0, 0'), // PTRACE_TRACEME
        perlSyscall('userfaultfd', '323, 1'), // UFFD_USER_MODE_ONLY, allowed to anyone without the filter
        perlSyscall('io_uring_setup', '425, 4, "\\0" x 120'),
        perlSyscall('perf_event_open', '298, "\\0" x 128, 0, -1, -1, 0'),
        perlSyscall('mount', '165, "none", "/tmp/m", "tmpfs", 0, 0'),
        perlSyscall('fsopen', '430, "tmpfs", 0'),
        perlSyscall('open_tree', '428, -100, "/tmp", 1'),
        perlSyscall('pidfd_getfd', '438, 0, 0, 0'),
        // socket(AF_VSOCK): the family plainly, and with high bits the kernel ignores.
        perlSyscall('vsock', '41, 40, 1, 0'),
        perlSyscall('vsock_high_bits', '41, 0x100000028, 1, 0'),
      ].join('; '),
    );
    for (const label of ['vsock', 'vsock_high_bits']) expect(output, output).toMatch(new RegExp(`${label}=errno97\\b`)); // EAFNOSUPPORT
    for (const label of [
      'py_mount',
      'py_keyctl',
      'keyctl',
      'add_key',
      'bpf',
      'ptrace',
      'userfaultfd',
      'io_uring_setup',
      'perf_event_open',
      'mount',
      'fsopen',
      'open_tree',
      'pidfd_getfd',
    ]) {
      expect(output, output).toContain(`${label}=EPERM`);
    }
  });

  it('still lets ordinary work run: shells, node, python, perl, git, background processes', async () => {
    const output = await commandOutput(
      running.service,
      [
        'cd /workspace && git init -q repo && cd repo && git -c user.name=a -c user.email=a@example.invalid commit -q --allow-empty -m first && echo "git=$(git log --oneline | wc -l)"',
        "node -e \"require('child_process').execFileSync('true'); require('fs').writeFileSync('/tmp/n', 'x'); console.log('node=ok')\"",
        "python3 -c \"import subprocess, threading; t = threading.Thread(target=print); t.start(); t.join(); subprocess.run(['true']); print('python=ok')\"",
        'perl -e \'my $p = fork; if ($p == 0) { exit 0 } waitpid($p, 0); print "perl=ok\\n"\'',
        '( perl -e "sleep 1" & wait ); echo "background=ok"',
      ].join('; '),
    );
    for (const ok of ['git=1', 'node=ok', 'python=ok', 'perl=ok', 'background=ok']) expect(output).toContain(ok);
  });
});
