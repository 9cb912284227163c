//! Prints how long loading (parsing, compiling, checking) the default
//! profile and seccomp policy takes, averaged over many loads.
fn main() {
    let n = 200;
    let t = std::time::Instant::now();
    for _ in 0..n {
        let p = cloister_sandbox::Profile::load("default").unwrap();
        std::hint::black_box(p);
    }
    println!("profile load: {:?} each", t.elapsed() / n);
    let t = std::time::Instant::now();
    for _ in 0..n {
        let p = cloister_sandbox::SeccompPolicy::load("default").unwrap();
        std::hint::black_box(p);
    }
    println!("policy load: {:?} each", t.elapsed() / n);
}
