//! Names for the bits of an epoll event, for `--trace` and the fd watcher.
//!
//! epoll_wait(2) returns, for each ready file descriptor, a bit mask. Seeing
//! the names (`EPOLLIN|EPOLLRDHUP` when a peer has closed, `EPOLLOUT` when a
//! send buffer has room) is the quickest way to learn what the kernel says.
//! Bits this table does not know are shown in hexadecimal, never dropped.

use nix::sys::epoll::EpollFlags;

/// Every flag epoll(7) documents, in the order of their bit values.
pub const EPOLL_FLAG_NAMES: &[(EpollFlags, &str)] = &[
    (EpollFlags::EPOLLIN, "EPOLLIN"),
    (EpollFlags::EPOLLPRI, "EPOLLPRI"),
    (EpollFlags::EPOLLOUT, "EPOLLOUT"),
    (EpollFlags::EPOLLERR, "EPOLLERR"),
    (EpollFlags::EPOLLHUP, "EPOLLHUP"),
    (EpollFlags::EPOLLRDNORM, "EPOLLRDNORM"),
    (EpollFlags::EPOLLRDBAND, "EPOLLRDBAND"),
    (EpollFlags::EPOLLWRNORM, "EPOLLWRNORM"),
    (EpollFlags::EPOLLWRBAND, "EPOLLWRBAND"),
    (EpollFlags::EPOLLMSG, "EPOLLMSG"),
    (EpollFlags::EPOLLRDHUP, "EPOLLRDHUP"),
    (EpollFlags::EPOLLEXCLUSIVE, "EPOLLEXCLUSIVE"),
    (EpollFlags::EPOLLWAKEUP, "EPOLLWAKEUP"),
    (EpollFlags::EPOLLONESHOT, "EPOLLONESHOT"),
    (EpollFlags::EPOLLET, "EPOLLET"),
];

/// The names of the bits set in `bits`, joined by `|`: `EPOLLIN|EPOLLRDHUP`.
/// Unknown bits follow as one hexadecimal number; no bits at all is `0`.
pub fn epoll_flag_names(bits: u32) -> String {
    let mut names = String::new();
    let mut rest = bits;
    for (flag, name) in EPOLL_FLAG_NAMES {
        if bits & flag.bits() as u32 != 0 {
            if !names.is_empty() {
                names.push('|');
            }
            names.push_str(name);
            rest &= !(flag.bits() as u32);
        }
    }
    if bits == 0 {
        return "0".to_owned();
    }
    if rest != 0 {
        if !names.is_empty() {
            names.push('|');
        }
        names.push_str(&format!("{rest:#x}"));
    }
    names
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_flag_has_its_own_name() {
        for (flag, name) in EPOLL_FLAG_NAMES {
            assert_eq!(epoll_flag_names(flag.bits() as u32), *name);
        }
    }

    #[test]
    fn the_table_has_distinct_single_bits() {
        let mut seen = 0u32;
        for (flag, name) in EPOLL_FLAG_NAMES {
            let bits = flag.bits() as u32;
            assert_eq!(bits.count_ones(), 1, "{name}");
            assert_eq!(seen & bits, 0, "{name} repeats a bit");
            seen |= bits;
        }
    }

    #[test]
    fn every_pair_of_flags_is_named_in_table_order() {
        for (i, (a, a_name)) in EPOLL_FLAG_NAMES.iter().enumerate() {
            for (b, b_name) in &EPOLL_FLAG_NAMES[i + 1..] {
                let bits = (a.bits() | b.bits()) as u32;
                assert_eq!(epoll_flag_names(bits), format!("{a_name}|{b_name}"));
            }
        }
    }

    #[test]
    fn all_flags_together() {
        let all = EPOLL_FLAG_NAMES
            .iter()
            .fold(0u32, |acc, (flag, _)| acc | flag.bits() as u32);
        let names: Vec<&str> = EPOLL_FLAG_NAMES.iter().map(|(_, name)| *name).collect();
        assert_eq!(epoll_flag_names(all), names.join("|"));
    }

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
                    bits |= flag.bits() as u32;
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

    #[test]
    fn unknown_bits_are_shown_in_hex() {
        assert_eq!(epoll_flag_names(0), "0");
        assert_eq!(epoll_flag_names(0x100_0000), "0x1000000");
        let bits = EpollFlags::EPOLLIN.bits() as u32 | 0x100_0000;
        assert_eq!(epoll_flag_names(bits), "EPOLLIN|0x1000000");
    }

    #[test]
    fn what_a_closed_peer_looks_like() {
        let bits = (EpollFlags::EPOLLIN | EpollFlags::EPOLLRDHUP).bits() as u32;
        assert_eq!(epoll_flag_names(bits), "EPOLLIN|EPOLLRDHUP");
    }
}
