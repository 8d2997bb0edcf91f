//! Statements whose length follows their input (multi-row `INSERT`s, `IN` lists),
//! written so that few distinct texts reach the database.
//!
//! sqlx prepares every distinct statement text once per connection and keeps up to 100
//! of them. A statement written for exactly `n` rows comes in as many texts as there are
//! batch sizes: under load they push each other (and every other statement) out of the
//! cache, and each is parsed and planned again. Runs whose lengths are powers of two
//! ([`pow2_chunks`]), or lists padded to one ([`padded_len`]), keep it to a handful.
//!
//! Placeholders are written out (`$1`, `$2`, …) because sqlx's `Any` query builder
//! emits `?`, which PostgreSQL does not accept.

use std::fmt::Write as _;

/// `($first, …), (…), …`: `rows` groups of `per_row` numbered placeholders, numbered
/// from `first`.
pub fn rows(rows: usize, per_row: usize, first: usize) -> String {
    let mut out = String::with_capacity(rows * per_row * 5);
    for r in 0..rows {
        if r > 0 {
            out.push_str(", ");
        }
        out.push('(');
        out.push_str(&list(per_row, first + r * per_row));
        out.push(')');
    }
    out
}

/// The placeholders of a multi-row `VALUES` list that holds every parameter of its
/// statement, bound row by row: [`rows`] numbered from 1 on PostgreSQL, and on SQLite
/// anonymous (`?`). sqlx looks each numbered parameter up by its name, which SQLite
/// answers by scanning the statement's list of names, so binding n numbered
/// parameters takes n²/2 steps: a run of 64 orders has 832 of them, and
/// `sqlite3_bind_parameter_name` was 2–6 % of each service's CPU under a burst.
pub fn values(conn: &sqlx::AnyConnection, rows: usize, per_row: usize) -> String {
    if conn.backend_name() != <sqlx::Sqlite as sqlx::Database>::NAME {
        return self::rows(rows, per_row, 1);
    }
    let row = format!("({})", vec!["?"; per_row].join(", "));
    vec![row; rows].join(", ")
}

/// `$first, $first+1, …`: `n` numbered placeholders.
pub fn list(n: usize, first: usize) -> String {
    let mut out = String::with_capacity(n * 5);
    for i in 0..n {
        if i > 0 {
            out.push_str(", ");
        }
        let _ = write!(out, "${}", first + i);
    }
    out
}

/// The length an `IN` list of `n` values is padded to (by repeating a value, which
/// changes nothing): the next power of two.
pub fn padded_len(n: usize) -> usize {
    n.next_power_of_two()
}

/// The values of an `IN` list of `items`, padded to [`padded_len`] by repeating the
/// last one; write the list with `list(padded_len(items.len()), first)`. Nothing when
/// `items` is empty.
pub fn padded<T>(items: &[T]) -> impl Iterator<Item = &T> {
    let pad = items
        .last()
        .map(|last| std::iter::repeat_n(last, padded_len(items.len()) - items.len()));
    items.iter().chain(pad.into_iter().flatten())
}

/// The rows of `select` (`SELECT … FROM …`, without a `WHERE`) whose `column` is one of
/// `values`: one statement, its `IN` list padded to [`padded_len`]. No rows, and no
/// statement, when `values` is empty.
pub async fn fetch_in<'c, E>(
    executor: E,
    select: &str,
    column: &str,
    values: &[impl AsRef<str>],
) -> Result<Vec<sqlx::any::AnyRow>, sqlx::Error>
where
    E: sqlx::Executor<'c, Database = sqlx::Any>,
{
    if values.is_empty() {
        return Ok(Vec::new());
    }
    let sql = format!(
        "{select} WHERE {column} IN ({})",
        list(padded_len(values.len()), 1)
    );
    let mut query = sqlx::query(&sql);
    for value in padded(values) {
        query = query.bind(value.as_ref().to_owned());
    }
    query.fetch_all(executor).await
}

/// `items` in runs whose lengths are powers of two no larger than `max`, longest first
/// (`max` is rounded down to a power of two; 0 counts as 1): a statement written for a
/// run comes in at most `log2(max) + 1` texts.
pub fn pow2_chunks<T>(items: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    let max = 1 << max.max(1).ilog2();
    let mut rest = items;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        let len = max.min(1 << rest.len().ilog2());
        let (run, tail) = rest.split_at(len);
        rest = tail;
        Some(run)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_rows() {
        assert_eq!(rows(2, 3, 1), "($1, $2, $3), ($4, $5, $6)");
        assert_eq!(rows(1, 1, 5), "($5)");
        assert_eq!(rows(0, 3, 1), "");
        assert_eq!(list(3, 2), "$2, $3, $4");
        assert_eq!(list(0, 1), "");
    }

    #[test]
    fn chunks_are_powers_of_two_longest_first_and_cover_every_item() {
        let items: Vec<u32> = (0..100).collect();
        let runs: Vec<&[u32]> = pow2_chunks(&items, 64).collect();
        assert_eq!(
            runs.iter().map(|r| r.len()).collect::<Vec<_>>(),
            [64, 32, 4]
        );
        assert_eq!(runs.concat(), items);
        let lens: Vec<usize> = pow2_chunks(&items, 200).map(<[u32]>::len).collect();
        assert_eq!(lens, [64, 32, 4], "200 rounds down to 128");
        let lens: Vec<usize> = pow2_chunks(&items[..7], 2).map(<[u32]>::len).collect();
        assert_eq!(lens, [2, 2, 2, 1]);
        assert_eq!(pow2_chunks::<u32>(&[], 8).count(), 0);
        assert_eq!(pow2_chunks(&items[..3], 0).count(), 3, "0 counts as 1");
    }

    #[test]
    fn every_length_up_to_max_uses_few_shapes() {
        let items: Vec<u32> = (0..200).collect();
        let mut shapes = std::collections::BTreeSet::new();
        for n in 0..=200 {
            shapes.extend(pow2_chunks(&items[..n], 128).map(<[u32]>::len));
        }
        assert_eq!(shapes.len(), 8, "1, 2, 4, … 128: {shapes:?}");
        assert_eq!(padded_len(5), 8);
        assert_eq!(padded_len(8), 8);
        assert_eq!(padded_len(1), 1);
        assert_eq!(
            padded(&[1, 2, 3, 4, 5]).copied().collect::<Vec<_>>(),
            [1, 2, 3, 4, 5, 5, 5, 5]
        );
        assert_eq!(padded(&[7, 8]).copied().collect::<Vec<_>>(), [7, 8]);
        assert_eq!(padded::<u32>(&[]).count(), 0);
    }
}
