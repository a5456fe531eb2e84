//! Kinds of blocking beyond sleep, CPU, files and mutexes, each through a
//! different path into the kernel: a socket read (libc's `recv` keeps no frame
//! pointer), a channel receive and a thread park (futex), and waiting for a
//! child process. Each must be caught while it happens, off-CPU, with the
//! user's function that made the call in every sampled stack.

mod support;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::time::{Duration, Instant};

use support::*;

const HOLD: Duration = Duration::from_millis(150);

/// Runs `block` in one watched poll on a multi-thread runtime and checks the
/// episode it makes.
fn caught_in(test: &str, function: &str, block: impl FnOnce() -> Duration + Send + 'static) {
    let (report, truth) = caught(test, block);
    let ep = episode_in(&report, function);
    assert_close(ep, truth, function);
    assert!(
        ep.off_cpu() > ep.on_cpu(),
        "{function} waits off-CPU: {report}"
    );
    // Nearly all sampled time reaches the function that made the call: the
    // walk (and the leaf repair, for libc without frame pointers) works for
    // this path into the kernel, not only for the heaviest stack.
    let sampled = ep.stacks().iter().filter(|s| !s.raw.is_empty());
    let (mut with, mut all) = (Duration::ZERO, Duration::ZERO);
    for stack in sampled {
        all += stack.weight;
        if stack.frames.iter().any(|f| f.function.contains(function)) {
            with += stack.weight;
        }
    }
    assert!(
        with * 10 >= all * 9,
        "only {with:?} of {all:?} sampled in {function}:\n{:#?}",
        ep.stacks()
    );
    assert_eq!(
        ep.top_user_frame().map(|f| f.function.contains(function)),
        Some(true),
        "{report}"
    );
}

/// Each blocking function tells its peer (a plain thread, never reported)
/// when it is about to block; the peer answers HOLD later.
type Go = std::sync::mpsc::Sender<()>;

#[inline(never)]
fn read_socket_synchronously(mut s: TcpStream, go: Go) -> Duration {
    let t = Instant::now();
    let mut buf = [0u8; 16];
    go.send(()).unwrap();
    s.read_exact(&mut buf).unwrap();
    t.elapsed()
}

#[test]
fn blocking_socket_read() {
    let _s = serial();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let (go, started) = std::sync::mpsc::channel();
    let peer = std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        started.recv().unwrap();
        std::thread::sleep(HOLD);
        s.write_all(&[7u8; 16]).unwrap();
    });
    let client = TcpStream::connect(addr).unwrap();
    caught_in("socket", "read_socket_synchronously", move || {
        read_socket_synchronously(client, go)
    });
    peer.join().unwrap();
}

#[inline(never)]
fn wait_on_std_channel(rx: std::sync::mpsc::Receiver<u32>, go: Go) -> Duration {
    let t = Instant::now();
    go.send(()).unwrap();
    rx.recv().unwrap();
    t.elapsed()
}

#[test]
fn blocking_channel_receive() {
    let _s = serial();
    let (tx, rx) = std::sync::mpsc::channel();
    let (go, started) = std::sync::mpsc::channel();
    let sender = std::thread::spawn(move || {
        started.recv().unwrap();
        std::thread::sleep(HOLD);
        tx.send(1).unwrap();
    });
    caught_in("channel", "wait_on_std_channel", move || {
        wait_on_std_channel(rx, go)
    });
    sender.join().unwrap();
}

#[inline(never)]
fn park_until_unparked(ready: std::sync::mpsc::Sender<std::thread::Thread>) -> Duration {
    let t = Instant::now();
    ready.send(std::thread::current()).unwrap();
    std::thread::park();
    t.elapsed()
}

#[test]
fn blocking_thread_park() {
    let _s = serial();
    let (tx, rx) = std::sync::mpsc::channel::<std::thread::Thread>();
    let unparker = std::thread::spawn(move || {
        let parked = rx.recv().unwrap();
        std::thread::sleep(HOLD);
        parked.unpark();
    });
    caught_in("park", "park_until_unparked", move || {
        park_until_unparked(tx)
    });
    unparker.join().unwrap();
}

#[test]
fn waiting_for_a_child_process() {
    let _s = serial();
    caught_in("child", "wait_for_child_process", wait_for_child_process);
}
