//! What both firmware binaries need from the runtime: the exit through
//! semihosting, the panic handler and the fault handlers (each reports
//! and fails the run, and so `cargo run`).

use cortex_m_rt::{ExceptionFrame, exception};
use cortex_m_semihosting::debug::{self, EXIT_FAILURE, EXIT_SUCCESS};
use cortex_m_semihosting::hprintln;

/// End the run with the semihosting status of `ok` (inlined: the main
/// firmware's stack figures stay those of its own `main`).
#[inline(always)]
pub fn exit(ok: bool) -> ! {
    debug::exit(if ok { EXIT_SUCCESS } else { EXIT_FAILURE });
    loop {
        cortex_m::asm::bkpt();
    }
}

/// Any panic fails the run (and so `cargo run`).
#[panic_handler]
fn panic(info: &core::panic::PanicInfo) -> ! {
    hprintln!("firmware: PANIC {}", info);
    exit(false)
}

// cortex-m-rt declares exception handlers `unsafe fn`; these only report and exit.
#[allow(unsafe_code)]
#[exception]
unsafe fn HardFault(frame: &ExceptionFrame) -> ! {
    hprintln!("firmware: HARD FAULT (stack overflow?) at pc {:#010x}", frame.pc());
    exit(false)
}

#[allow(unsafe_code)]
#[exception]
unsafe fn DefaultHandler(irqn: i16) {
    hprintln!("firmware: unexpected exception {}", irqn);
    debug::exit(EXIT_FAILURE);
}
