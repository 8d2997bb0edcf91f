//! gRPC requests and answers as tests build and read them: a request carrying a bearer
//! token, and the field paths a refusal names.

/// `msg` as a request that presents `token` in `authorization: Bearer …`.
pub fn with_token<T>(msg: T, token: &str) -> tonic::Request<T> {
    let mut req = tonic::Request::new(msg);
    req.metadata_mut().insert(
        "authorization",
        format!("Bearer {token}")
            .parse()
            .expect("a token fit for a header"),
    );
    req
}

/// The field paths of the `BadRequest` violations a status carries, in its order; none
/// when it has no such details.
pub fn violations(status: &tonic::Status) -> Vec<String> {
    use tonic_types::StatusExt as _;
    status
        .get_error_details()
        .bad_request()
        .map(|b| b.field_violations.iter().map(|v| v.field.clone()).collect())
        .unwrap_or_default()
}

/// The refusal `outcome` must be: an error status with code `want`.
#[track_caller]
pub fn expect_code<T: std::fmt::Debug>(
    outcome: Result<T, tonic::Status>,
    want: tonic::Code,
) -> tonic::Status {
    let status = outcome.expect_err("a refusal");
    assert_eq!(status.code(), want, "{status:?}");
    status
}

/// The refusal `outcome` must be: an error status whose `BadRequest` violations name
/// exactly `fields`, in that order.
#[track_caller]
pub fn expect_fields<T: std::fmt::Debug>(
    outcome: Result<T, tonic::Status>,
    fields: &[&str],
) -> tonic::Status {
    let status = outcome.expect_err("a refusal naming fields");
    assert_eq!(violations(&status), fields, "{status:?}");
    status
}
