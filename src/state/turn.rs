//! Whose turn it is to charge: a lock shared by every process that opens
//! the same file, taken with a deadline. LMDB's own writer lock has none,
//! and a process stopped while it holds it (SIGSTOP, a debugger) would
//! stall every other session's relay; with this one in front of it, the
//! others wait up to a deadline and then fail closed.
//!
//! The lock is a robust, process-shared pthread mutex in a page of the
//! file, mapped shared: taking and giving it back are an atomic operation
//! each, no system call, unless another process holds it. A process that
//! dies holding it (SIGKILL mid-charge) hands it to the next taker, which
//! is told so (`EOWNERDEAD`) and goes on: nothing it holds needs mending,
//! since LMDB keeps the last committed transaction intact.
//!
//! The mutex is laid out afresh by whoever opens the file with no other
//! process holding it open (each holds a shared `fcntl` lock on it while
//! it has it open, as LMDB does with its own lock file): a mutex left held
//! by a process the machine lost (a power cut mid-charge) would otherwise
//! stay held, since no kernel is left to hand it on.

use std::fs::File;
use std::io;
use std::os::fd::AsRawFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::ptr::NonNull;
use std::time::Duration;

/// The part of the file mapped: one page, the mutex at its start.
const SIZE: usize = 4096;

pub struct Turn {
    mutex: NonNull<libc::pthread_mutex_t>,
    /// Holds the shared `fcntl` lock that says the file is in use.
    _file: File,
}

// SAFETY: the mutex is made for sharing between processes, and so between
// threads; the mapping lives as long as the Turn.
unsafe impl Send for Turn {}
unsafe impl Sync for Turn {}

/// Why the turn was not had.
#[derive(Debug)]
pub enum NotHad {
    /// Another process held it past the deadline.
    Busy,
    Failed(io::Error),
}

/// Holding the turn; given back when dropped.
pub struct Held<'a>(&'a Turn);

impl Turn {
    /// Opens (or creates, 0600) the lock file at `path`. One Turn per file
    /// per process: closing another descriptor of the same file would drop
    /// this process's `fcntl` lock on it.
    pub fn open(path: &Path) -> io::Result<Turn> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode(0o600)
            .open(path)?;
        let fd = file.as_raw_fd();
        // Alone with the file: lay the mutex out afresh. Otherwise wait
        // for whoever is laying it out (it holds the write lock until it
        // is done), then share the file.
        let alone = set_lock(fd, libc::F_WRLCK, false).is_ok();
        if alone {
            file.set_len(SIZE as u64)?;
        } else {
            set_lock(fd, libc::F_RDLCK, true)?;
            if file.metadata()?.len() < SIZE as u64 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "not a lock file of toolwarden's (too short)",
                ));
            }
        }
        // SAFETY: a shared mapping of the file's first page, which is at
        // least that long; unmapped in Drop.
        let map = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                SIZE,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_SHARED,
                fd,
                0,
            )
        };
        if map == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let turn = Turn {
            mutex: NonNull::new(map.cast()).expect("mmap gave an address"),
            _file: file,
        };
        if alone {
            turn.lay_out()?;
            // An atomic change of the lock's kind: nobody else can take
            // the write lock in between and lay the mutex out again.
            set_lock(fd, libc::F_RDLCK, true)?;
        }
        Ok(turn)
    }

    /// A fresh robust, process-shared mutex in the page.
    fn lay_out(&self) -> io::Result<()> {
        // SAFETY: the attribute lives on this stack for the calls; the
        // mutex's memory is the mapped page, which nobody else uses while
        // this process holds the file's write lock.
        unsafe {
            let mut attr = std::mem::MaybeUninit::<libc::pthread_mutexattr_t>::uninit();
            check(libc::pthread_mutexattr_init(attr.as_mut_ptr()))?;
            let attr = attr.as_mut_ptr();
            let made = check(libc::pthread_mutexattr_setpshared(
                attr,
                libc::PTHREAD_PROCESS_SHARED,
            ))
            .and_then(|()| {
                check(libc::pthread_mutexattr_setrobust(
                    attr,
                    libc::PTHREAD_MUTEX_ROBUST,
                ))
            })
            .and_then(|()| check(libc::pthread_mutex_init(self.mutex.as_ptr(), attr)));
            libc::pthread_mutexattr_destroy(attr);
            made
        }
    }

    /// Takes the turn, waiting up to `wait` for another process to give it
    /// back.
    pub fn take(&self, wait: Duration) -> Result<Held<'_>, NotHad> {
        // SAFETY: the mutex was laid out by open (here or in another
        // process) and stays mapped while self lives.
        let code = match unsafe { libc::pthread_mutex_trylock(self.mutex.as_ptr()) } {
            // Somebody else's turn: wait for it, up to the deadline (the
            // clock read only then).
            libc::EBUSY => self.wait(wait),
            code => code,
        };
        match code {
            0 => Ok(Held(self)),
            libc::EOWNERDEAD => {
                // The last holder died mid-charge; its transaction was
                // never committed, so what the store holds is whole.
                // SAFETY: this thread holds the mutex.
                match check(unsafe { libc::pthread_mutex_consistent(self.mutex.as_ptr()) }) {
                    Ok(()) => Ok(Held(self)),
                    Err(e) => Err(NotHad::Failed(e)),
                }
            }
            libc::ETIMEDOUT => Err(NotHad::Busy),
            e => Err(NotHad::Failed(io::Error::from_raw_os_error(e))),
        }
    }

    /// `pthread_mutex_timedlock` up to `wait` from now.
    fn wait(&self, wait: Duration) -> i32 {
        let mut now = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: a valid timespec to write into.
        unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
        let nanos = now.tv_nsec as u64 + u64::from(wait.subsec_nanos());
        let deadline = libc::timespec {
            tv_sec: now.tv_sec
                + wait.as_secs() as libc::time_t
                + (nanos / 1_000_000_000) as libc::time_t,
            tv_nsec: (nanos % 1_000_000_000) as _,
        };
        // SAFETY: as in take.
        unsafe { libc::pthread_mutex_timedlock(self.mutex.as_ptr(), &deadline) }
    }
}

impl Drop for Held<'_> {
    fn drop(&mut self) {
        // SAFETY: this thread took the mutex in Turn::take.
        unsafe { libc::pthread_mutex_unlock(self.0.mutex.as_ptr()) };
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // SAFETY: the page mapped in open, no longer used.
        unsafe { libc::munmap(self.mutex.as_ptr().cast(), SIZE) };
    }
}

/// A lock on the whole file: `F_SETLK` (`wait`: `F_SETLKW`).
fn set_lock(fd: i32, kind: i32, wait: bool) -> io::Result<()> {
    // SAFETY: zeroed flock is a valid value (whole file from offset 0).
    let mut lock: libc::flock = unsafe { std::mem::zeroed() };
    lock.l_type = kind as _;
    lock.l_whence = libc::SEEK_SET as _;
    let command = if wait { libc::F_SETLKW } else { libc::F_SETLK };
    loop {
        // SAFETY: a valid descriptor and flock.
        if unsafe { libc::fcntl(fd, command, &lock) } == 0 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        if e.kind() != io::ErrorKind::Interrupted {
            return Err(e);
        }
    }
}

fn check(code: i32) -> io::Result<()> {
    match code {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> std::path::PathBuf {
        let dir =
            std::env::temp_dir().join(format!("toolwarden-turn-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        dir.join("turn")
    }

    /// Forks a process that takes the turn from the same file's mapping,
    /// says so on a pipe, then sleeps (or exits at once, holding it).
    fn holder(turn: &Turn, exit: bool) -> libc::pid_t {
        let mut pipe = [0; 2];
        // SAFETY: plain system calls; the child only locks, writes a byte
        // and sleeps or exits, without touching Rust's runtime.
        unsafe {
            assert_eq!(libc::pipe(pipe.as_mut_ptr()), 0);
            let pid = libc::fork();
            if pid == 0 {
                libc::pthread_mutex_lock(turn.mutex.as_ptr());
                libc::write(pipe[1], b"x".as_ptr().cast(), 1);
                if !exit {
                    libc::sleep(30);
                }
                libc::_exit(0);
            }
            let mut byte = 0u8;
            assert_eq!(libc::read(pipe[0], (&mut byte as *mut u8).cast(), 1), 1);
            libc::close(pipe[0]);
            libc::close(pipe[1]);
            pid
        }
    }

    #[test]
    fn a_turn_held_past_the_deadline_is_not_had_and_one_whose_holder_died_is() {
        let turn = Turn::open(&temp("held")).unwrap();
        let pid = holder(&turn, false);
        let started = std::time::Instant::now();
        assert!(matches!(
            turn.take(Duration::from_millis(200)),
            Err(NotHad::Busy)
        ));
        assert!(started.elapsed() >= Duration::from_millis(200));
        // SAFETY: our own child.
        unsafe {
            libc::kill(pid, libc::SIGKILL);
            libc::waitpid(pid, std::ptr::null_mut(), 0);
        }
        drop(turn.take(Duration::from_millis(200)).unwrap());
        // And taken and given back as usual after that.
        drop(turn.take(Duration::from_millis(200)).unwrap());
    }

    #[test]
    fn a_process_that_exits_holding_the_turn_hands_it_on() {
        let turn = Turn::open(&temp("exited")).unwrap();
        let pid = holder(&turn, true);
        // SAFETY: our own child.
        unsafe { libc::waitpid(pid, std::ptr::null_mut(), 0) };
        drop(turn.take(Duration::from_millis(200)).unwrap());
    }

    /// A mutex left held in the file (by a process of a machine that lost
    /// power: no kernel is left to hand it on) is laid out afresh by the
    /// next process to open the file with nobody else holding it open.
    #[test]
    fn a_turn_left_held_in_the_file_is_laid_out_afresh_when_nobody_has_it_open() {
        let path = temp("left");
        drop(Turn::open(&path).unwrap());
        // glibc's mutex starts with its lock word and, after the count,
        // its owner: a thread that is no more, holding it.
        let mut page = std::fs::read(&path).unwrap();
        let gone: i32 = 0x3fff_fff0;
        page[0..4].copy_from_slice(&gone.to_ne_bytes());
        page[8..12].copy_from_slice(&gone.to_ne_bytes());
        std::fs::write(&path, &page).unwrap();
        let turn = Turn::open(&path).unwrap();
        drop(turn.take(Duration::from_millis(200)).unwrap());
    }
}
