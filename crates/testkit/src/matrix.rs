//! Tables of who may call what: each row names a caller, a call and the `tonic::Code`
//! the call must end with (`Code::Ok` for a success), and [`Callers::expect_codes`]
//! runs the rows in order, one loop whose assertion names the row that failed.

use std::fmt::Debug;

use tonic::Code;

use crate::grpc::with_token;

/// Who makes the call of a table row.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Caller {
    /// No `authorization` header at all.
    Anonymous,
    /// A token the service must refuse, named by how it is bad (garbage, a forged
    /// signature, `alg: none` …).
    BadToken(&'static str),
    /// A well-formed token signed by a key the service does not know.
    ForeignKey,
    /// The customer the test follows.
    Customer,
    /// Another customer.
    OtherCustomer,
    /// A user granted `staff`.
    Staff,
    /// A user granted `admin`.
    Admin,
}

/// The tokens a test holds, by caller.
#[derive(Clone, Debug, Default)]
pub struct Callers {
    tokens: Vec<(Caller, String)>,
}

/// What one caller presents: nothing, or a bearer token.
#[derive(Clone, Copy, Debug)]
pub struct Auth<'a>(Option<&'a str>);

impl<'a> Auth<'a> {
    /// Presenting no token.
    pub fn anonymous() -> Self {
        Self(None)
    }

    /// Presenting `token`.
    pub fn bearer(token: &'a str) -> Self {
        Self(Some(token))
    }

    /// `msg` as a request with these credentials.
    pub fn request<T>(self, msg: T) -> tonic::Request<T> {
        match self.0 {
            Some(token) => with_token(msg, token),
            None => tonic::Request::new(msg),
        }
    }
}

impl Callers {
    /// No tokens yet: only [`Caller::Anonymous`] can call.
    pub fn new() -> Self {
        Self::default()
    }

    /// These callers, with `who` presenting `token`.
    pub fn with(mut self, who: Caller, token: impl Into<String>) -> Self {
        self.tokens.retain(|(held, _)| *held != who);
        self.tokens.push((who, token.into()));
        self
    }

    /// What `who` presents: nothing when anonymous, else its token. Panics when the
    /// test gave `who` no token.
    pub fn auth(&self, who: Caller) -> Auth<'_> {
        if who == Caller::Anonymous {
            return Auth::anonymous();
        }
        self.tokens
            .iter()
            .find(|(held, _)| *held == who)
            .map(|(_, token)| Auth::bearer(token))
            .unwrap_or_else(|| panic!("the table names {who:?}, who has no token"))
    }

    /// Runs `rows` in order: `call` makes the row's call with the caller's
    /// credentials, and its outcome must be the row's code. Returns what the calls
    /// expected to succeed answered, in row order.
    pub async fn expect_codes<R: Debug, T>(
        &self,
        rows: impl IntoIterator<Item = (Caller, R, Code)>,
        mut call: impl AsyncFnMut(Auth<'_>, R) -> Result<T, tonic::Status>,
    ) -> Vec<T> {
        let mut answers = Vec::new();
        for (n, (who, rpc, want)) in rows.into_iter().enumerate() {
            let row = format!("row {}: {who:?} calling {rpc:?}", n + 1);
            match call(self.auth(who), rpc).await {
                Ok(answer) => {
                    assert_eq!(Code::Ok, want, "{row} succeeded");
                    answers.push(answer);
                }
                Err(status) => assert_eq!(status.code(), want, "{row}: {status:?}"),
            }
        }
        answers
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A service where only staff may call, and customers are told so.
    async fn staff_only(auth: Auth<'_>, rpc: &str) -> Result<String, tonic::Status> {
        match auth.request(()).metadata().get("authorization") {
            Some(v) if v == "Bearer s3cret" => Ok(format!("{rpc} done")),
            Some(_) => Err(tonic::Status::permission_denied("staff only")),
            None => Err(tonic::Status::unauthenticated("no token")),
        }
    }

    fn callers() -> Callers {
        Callers::new()
            .with(Caller::Customer, "c")
            .with(Caller::Staff, "s3cret")
    }

    #[tokio::test]
    async fn rows_run_in_order_and_successes_are_answered() {
        let answers = callers()
            .expect_codes(
                [
                    (Caller::Anonymous, "ship", Code::Unauthenticated),
                    (Caller::Customer, "ship", Code::PermissionDenied),
                    (Caller::Staff, "ship", Code::Ok),
                    (Caller::Staff, "deliver", Code::Ok),
                ],
                async |auth, rpc| staff_only(auth, rpc).await,
            )
            .await;
        assert_eq!(answers, ["ship done", "deliver done"]);
    }

    #[tokio::test]
    #[should_panic(expected = "row 2: Customer calling \"ship\"")]
    async fn a_failing_row_is_named() {
        callers()
            .expect_codes(
                [
                    (Caller::Staff, "ship", Code::Ok),
                    (Caller::Customer, "ship", Code::Ok),
                ],
                async |auth, rpc| staff_only(auth, rpc).await,
            )
            .await;
    }

    #[test]
    #[should_panic(expected = "the table names Admin, who has no token")]
    fn a_caller_without_a_token_is_a_mistake_in_the_test() {
        callers().auth(Caller::Admin);
    }
}
