//! Names for the bits of an epoll event, for `--trace` and the fd watcher.
//!
//! epoll_wait(2) returns, for each ready file descriptor, a bit mask. Seeing
//! the names (`EPOLLIN|EPOLLRDHUP` when a peer has closed, `EPOLLOUT` when a
//! send buffer has room) is the quickest way to learn what the kernel says.
//! Bits nix does not name are shown in hexadecimal, never dropped.

use nix::sys::epoll::EpollFlags;

/// The names of the bits set in `bits`, joined by `|` in the order of
/// their values: `EPOLLIN|EPOLLRDHUP`. Unknown bits follow as one
/// hexadecimal number; no bits at all is `0`.
pub fn epoll_flag_names(bits: u32) -> String {
    if bits == 0 {
        return "0".to_owned();
    }
    // nix's EpollFlags is a bitflags type: `iter_names` yields the name of
    // each flag set in it, in the order nix declares them, which is not
    // quite the order of their bits (EPOLLERR, 0x8, comes after
    // EPOLLRDNORM, 0x40). Sorted by value, a mask always reads the same.
    // The kernel's mask is a u32; nix stores it as the C int of
    // epoll_event.events, so EPOLLET (bit 31) is its sign bit.
    let flags = EpollFlags::from_bits_retain(bits as i32);
    let mut named: Vec<(u32, &str)> = flags
        .iter_names()
        .map(|(name, flag)| (flag.bits() as u32, name))
        .collect();
    named.sort_unstable();
    let mut names: Vec<String> = named.iter().map(|(_, name)| (*name).to_owned()).collect();
    let unknown = bits & !(EpollFlags::all().bits() as u32);
    if unknown != 0 {
        names.push(format!("{unknown:#x}"));
    }
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every flag epoll(7) documents, with its value in Linux's
    /// <sys/epoll.h>, in the order of its bit: what the trace must call
    /// each one.
    const EPOLL_FLAG_NAMES: &[(u32, &str)] = &[
        (0x001, "EPOLLIN"),
        (0x002, "EPOLLPRI"),
        (0x004, "EPOLLOUT"),
        (0x008, "EPOLLERR"),
        (0x010, "EPOLLHUP"),
        (0x040, "EPOLLRDNORM"),
        (0x080, "EPOLLRDBAND"),
        (0x100, "EPOLLWRNORM"),
        (0x200, "EPOLLWRBAND"),
        (0x400, "EPOLLMSG"),
        (0x2000, "EPOLLRDHUP"),
        (1 << 28, "EPOLLEXCLUSIVE"),
        (1 << 29, "EPOLLWAKEUP"),
        (1 << 30, "EPOLLONESHOT"),
        (1 << 31, "EPOLLET"),
    ];

    /// Each flag alone is called by its name in epoll(7).
    #[test]
    fn every_flag_has_its_own_name() {
        for (flag, name) in EPOLL_FLAG_NAMES {
            assert_eq!(epoll_flag_names(*flag), *name);
        }
    }

    /// The expectations above are fifteen distinct single bits, in rising
    /// order, and nix names no flag they leave out.
    #[test]
    fn the_table_has_distinct_single_bits_in_order() {
        let mut seen = 0u32;
        for (flag, name) in EPOLL_FLAG_NAMES {
            let bits = *flag;
            assert_eq!(bits.count_ones(), 1, "{name}");
            assert!(bits > seen, "{name} is out of order or repeats a bit");
            seen |= bits;
        }
        assert_eq!(seen, EpollFlags::all().bits() as u32);
    }

    /// Two flags are named in the order of their bits, whatever order nix
    /// declares them in.
    #[test]
    fn every_pair_of_flags_is_named_in_table_order() {
        for (i, (a, a_name)) in EPOLL_FLAG_NAMES.iter().enumerate() {
            for (b, b_name) in &EPOLL_FLAG_NAMES[i + 1..] {
                let bits = a | b;
                assert_eq!(epoll_flag_names(bits), format!("{a_name}|{b_name}"));
            }
        }
    }

    /// All fifteen flags at once: every name, in bit order.
    #[test]
    fn all_flags_together() {
        let all = EPOLL_FLAG_NAMES
            .iter()
            .fold(0u32, |acc, (flag, _)| acc | flag);
        let names: Vec<&str> = EPOLL_FLAG_NAMES.iter().map(|(_, name)| *name).collect();
        assert_eq!(epoll_flag_names(all), names.join("|"));
    }

    /// Any set of flags, with or without an unknown bit, reads in bit
    /// order, the unknown bit last in hexadecimal.
    #[test]
    fn every_combination_of_flags_is_named_in_table_order() {
        // All 2^15 subsets of the table (32,768: a few milliseconds), each
        // also with an unknown bit added, which must come last, in hex.
        let table = EPOLL_FLAG_NAMES;
        for subset in 1u32..1 << table.len() {
            let mut bits = 0u32;
            let mut names = Vec::new();
            for (i, (flag, name)) in table.iter().enumerate() {
                if subset & (1 << i) != 0 {
                    bits |= flag;
                    names.push(*name);
                }
            }
            let expected = names.join("|");
            assert_eq!(epoll_flag_names(bits), expected);
            assert_eq!(
                epoll_flag_names(bits | 0x100_0000),
                format!("{expected}|0x1000000")
            );
        }
    }

    /// Bits epoll(7) does not name are shown in hexadecimal, not dropped;
    /// an empty mask is `0`.
    #[test]
    fn unknown_bits_are_shown_in_hex() {
        assert_eq!(epoll_flag_names(0), "0");
        assert_eq!(epoll_flag_names(0x100_0000), "0x1000000");
        let bits = EpollFlags::EPOLLIN.bits() as u32 | 0x100_0000;
        assert_eq!(epoll_flag_names(bits), "EPOLLIN|0x1000000");
        assert_eq!(epoll_flag_names(0x300_0000), "0x3000000");
    }

    /// A peer's close, as the kernel reports it (not EPOLLHUP).
    #[test]
    fn what_a_closed_peer_looks_like() {
        let bits = (EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP).bits() as u32;
        assert_eq!(epoll_flag_names(bits), "EPOLLIN|EPOLLRDHUP");
    }
}
