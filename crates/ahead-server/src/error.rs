//! Errors as HTTP statuses with the OpenAI error body.

use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;

use crate::api::{ErrorBody, ErrorDetail};

/// A request that cannot be served, and why.
#[derive(Debug, Clone)]
pub struct ApiError {
    pub status: StatusCode,
    pub message: String,
    pub kind: &'static str,
    pub param: Option<String>,
    pub code: Option<&'static str>,
}

impl ApiError {
    pub fn invalid(message: impl Into<String>, param: Option<&str>) -> Self {
        Self {
            status: StatusCode::BAD_REQUEST,
            message: message.into(),
            kind: "invalid_request_error",
            param: param.map(str::to_string),
            code: None,
        }
    }

    pub fn status(
        status: StatusCode,
        kind: &'static str,
        code: &'static str,
        message: impl Into<String>,
    ) -> Self {
        Self {
            status,
            message: message.into(),
            kind,
            param: None,
            code: Some(code),
        }
    }

    pub fn body(&self) -> ErrorBody {
        ErrorBody {
            error: ErrorDetail {
                message: self.message.clone(),
                kind: self.kind,
                param: self.param.clone(),
                code: self.code,
            },
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let retry = matches!(
            self.status,
            StatusCode::SERVICE_UNAVAILABLE | StatusCode::TOO_MANY_REQUESTS
        );
        let mut r = (self.status, Json(self.body())).into_response();
        r.extensions_mut().insert(crate::log::Logged {
            error: Some(self.code.map_or_else(|| self.message.clone(), str::to_string)),
            ..Default::default()
        });
        if retry {
            r.headers_mut()
                .insert(header::RETRY_AFTER, header::HeaderValue::from_static("1"));
        }
        r
    }
}

impl From<ahead_engine::EngineError> for ApiError {
    fn from(e: ahead_engine::EngineError) -> Self {
        use ahead_engine::EngineError as E;
        match e {
            E::InvalidRequest(m) => Self::invalid(m, None),
            E::Sampling(c) => Self::invalid(c.to_string(), None),
            E::MethodUnavailable { .. } => Self::invalid(e.to_string(), Some("ahead.method")),
            other => Self {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                message: other.to_string(),
                kind: "server_error",
                param: None,
                code: None,
            },
        }
    }
}
