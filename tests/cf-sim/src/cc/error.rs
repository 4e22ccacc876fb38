//! CF's error responses: `{"errors":[{"code","title","detail"}]}`, one constructor per CF error the sim raises,
//! with the codes and HTTP statuses of cloud_controller_ng's `errors/v2.yml` and `errors/v3.yml`.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: u32,
    pub title: String,
    pub detail: String,
}

impl ApiError {
    pub fn new(status: u16, code: u32, title: &str, detail: impl Into<String>) -> Self {
        ApiError {
            status: StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
            code,
            title: title.to_string(),
            detail: detail.into(),
        }
    }

    /// A known path whose resource does not exist: `what` is "App", "Droplet", …
    pub fn not_found(what: &str) -> Self {
        Self::new(404, 10010, "CF-ResourceNotFound", format!("{what} not found"))
    }

    /// A path CC has no route for.
    pub fn unknown_request() -> Self {
        Self::new(404, 10000, "CF-NotFound", "Unknown request")
    }

    pub fn not_authenticated() -> Self {
        Self::new(401, 10002, "CF-NotAuthenticated", "Authentication error")
    }

    /// errors/v2.yml's NotAuthorized (`unauthorized!`, `check_write_permissions!`).
    pub fn not_authorized() -> Self {
        Self::new(403, 10003, "CF-NotAuthorized", "You are not authorized to perform the requested action")
    }

    pub fn invalid_auth_token() -> Self {
        Self::new(401, 1000, "CF-InvalidAuthToken", "Invalid Auth Token")
    }

    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(422, 10008, "CF-UnprocessableEntity", detail)
    }

    pub fn uniqueness(detail: impl Into<String>) -> Self {
        Self::new(422, 10016, "CF-UniquenessError", detail)
    }

    pub fn bad_query(detail: impl Into<String>) -> Self {
        Self::new(400, 10005, "CF-BadQueryParameter", format!("The query parameter is invalid: {}", detail.into()))
    }

    pub fn message_parse(detail: impl Into<String>) -> Self {
        Self::new(400, 1001, "CF-MessageParseError", format!("Request invalid due to parse error: {}", detail.into()))
    }

    pub fn invalid_request(detail: impl Into<String>) -> Self {
        Self::new(400, 10004, "CF-InvalidRequest", detail)
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(400, 1004, "CF-BadRequest", format!("Bad request: {}", detail.into()))
    }

    pub fn staging_in_progress() -> Self {
        Self::new(422, 170017, "CF-StagingInProgress", "Only one build can be STAGING at a time per application.")
    }

    pub fn app_package_invalid(detail: impl Into<String>) -> Self {
        Self::new(400, 150001, "CF-AppPackageInvalid", format!("The app package is invalid: {}", detail.into()))
    }

    pub fn app_bits_upload_invalid(detail: impl Into<String>) -> Self {
        Self::new(400, 160001, "CF-AppBitsUploadInvalid", format!("The app upload is invalid: {}", detail.into()))
    }

    pub fn resource_mode_invalid(detail: impl Into<String>) -> Self {
        Self::new(
            400,
            160003,
            "CF-AppResourcesFileModeInvalid",
            format!("The resource file mode is invalid: {}", detail.into()),
        )
    }

    pub fn resource_path_invalid(detail: impl Into<String>) -> Self {
        Self::new(
            400,
            160004,
            "CF-AppResourcesFilePathInvalid",
            format!("The resource file path is invalid: {}", detail.into()),
        )
    }

    pub fn feature_disabled(feature: &str) -> Self {
        Self::new(403, 330002, "CF-FeatureDisabled", format!("Feature Disabled: {feature}"))
    }

    /// An exception no controller rescues: `V3ErrorHasher`'s `UNKNOWN_ERROR_HASH`, whose title has no `CF-` prefix.
    pub fn unhandled() -> Self {
        Self::new(500, 10001, "UnknownError", "An unknown error occurred.")
    }

    pub fn unknown_error() -> Self {
        Self::new(500, 10001, "CF-UnknownError", "An unknown error occurred.")
    }

    /// A default error for an injected fault with only a status.
    pub fn for_status(status: u16) -> Self {
        match status {
            400 => Self::invalid_request("The request is invalid"),
            401 => Self::invalid_auth_token(),
            403 => Self::not_authorized(),
            404 => Self::not_found("Resource"),
            422 => Self::unprocessable("something went wrong"),
            429 => Self::new(429, 10013, "CF-RateLimitExceeded", "Rate Limit Exceeded"),
            502 => Self::new(502, 10001, "CF-UnknownError", "An unknown error occurred."),
            503 => Self::new(503, 10015, "CF-ServiceUnavailable", "Service Unavailable"),
            _ => Self::new(status, 10001, "CF-UnknownError", "An unknown error occurred."),
        }
    }

    /// The error object, as it appears in `errors[]` of a response or a failed job.
    pub fn to_json(&self) -> Value {
        json!({"code": self.code, "title": self.title, "detail": self.detail})
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, Json(json!({"errors": [self.to_json()]}))).into_response()
    }
}

pub type ApiResult<T> = Result<T, ApiError>;
