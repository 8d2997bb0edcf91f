//! The operations of `weft demo --load` and their mix: `--mix signup=1,order=5,read=20`
//! sends them in those proportions.

use anyhow::{Context as _, bail};

/// One operation of the load.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Op {
    /// Signs up a new user.
    Signup,
    /// Creates an order for one of the load's customers.
    Order,
    /// Reads one of the load's customers' orders.
    Read,
}

impl Op {
    /// Its name in `--mix` and in the report.
    pub(super) fn name(self) -> &'static str {
        match self {
            Op::Signup => "signup",
            Op::Order => "order",
            Op::Read => "read",
        }
    }
}

/// `signup=1,order=5,read=20` → weights.
pub(super) fn parse_mix(mix: &str) -> anyhow::Result<Vec<(Op, u32)>> {
    let mut out = Vec::new();
    for part in mix.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (name, weight) = part
            .split_once('=')
            .with_context(|| format!("{part:?} is not name=weight"))?;
        let op = match name.trim() {
            "signup" => Op::Signup,
            "order" => Op::Order,
            "read" => Op::Read,
            other => bail!("unknown operation {other:?} in --mix; use signup, order, read"),
        };
        let weight: u32 = weight
            .trim()
            .parse()
            .with_context(|| format!("{weight:?} is not a whole number"))?;
        out.push((op, weight));
    }
    if out.iter().map(|(_, w)| w).sum::<u32>() == 0 {
        bail!("--mix needs at least one operation with a weight above 0");
    }
    Ok(out)
}

/// The operations in sending order: each as often as its weight, repeated.
pub(super) fn schedule(mix: &[(Op, u32)]) -> Vec<Op> {
    mix.iter()
        .flat_map(|(op, w)| std::iter::repeat_n(*op, *w as usize))
        .collect()
}

/// The mix as `--mix` spells it.
pub(super) fn describe(mix: &[(Op, u32)]) -> String {
    mix.iter()
        .map(|(op, w)| format!("{}={w}", op.name()))
        .collect::<Vec<_>>()
        .join(",")
}
