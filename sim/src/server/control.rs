//! The control API: HTTP/JSON on loopback, where tests, scenarios and people plug in EVs,
//! present cards, break things and read the ground truth.
//!
//! | request | body | answer |
//! | --- | --- | --- |
//! | `GET /state` | | the ground truth |
//! | `POST /ev/plug` | `{"gun", "battery_v", "soc", "max_current_a", "target_soc", "ev_mac"?, "emaid"?, "capacity_kwh"?}` | `{"ok": true}` |
//! | `POST /ev/unplug` | `{"gun"}` | `{"ok": true}` |
//! | `POST /rfid` | `{"gun", "id_tag"}` | `{"ok": true}` |
//! | `POST /faults` | `{"kind", "target", "contactor"?}` | `201 {"id"}` |
//! | `DELETE /faults/ID` | | `{"ok": true}` |
//! | `GET /violations` | | `[{"time_ms", "invariant", "subject", "detail"}, …]` |
//! | `GET /buses` | | the socketcand server's counters |
//!
//! Every refusal is `{"error": "FIELD: what is wrong", "field": "FIELD"}`: 400 for a body
//! that does not parse (unknown field, wrong type, missing field), 422 for an action the
//! world refuses (an unknown gun), 404 for an unknown fault id or path, 503 once the world
//! has stopped.
//!
//! Built on axum (over hyper): routing, graceful shutdown and HTTP/1.1 correctness for a
//! few lines; bodies are read as bytes and parsed here with `serde_path_to_error`, so that
//! errors name the field and do not depend on the request's content type.

use std::io;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::net::TcpListener;

use crate::world::{Action, ActionError, ActionReply, EvSpec, FaultSpec};

use super::Shutdown;
use super::bus::Buses;
use super::runner::{WorldGone, WorldHandle};

/// What the handlers share.
#[derive(Debug, Clone)]
struct AppState {
    /// The world's runner.
    world: WorldHandle,
    /// The buses, for their counters.
    buses: Buses,
}

/// The API's routes.
pub fn router(world: WorldHandle, buses: Buses) -> Router {
    Router::new()
        .route("/state", get(state))
        .route("/ev/plug", post(plug))
        .route("/ev/unplug", post(unplug))
        .route("/rfid", post(rfid))
        .route("/faults", post(inject_fault))
        .route("/faults/{id}", delete(clear_fault))
        .route("/violations", get(violations))
        .route("/buses", get(bus_stats))
        .fallback(not_found)
        .with_state(AppState { world, buses })
}

/// Serves the API until shutdown.
pub async fn serve(
    listener: TcpListener,
    world: WorldHandle,
    buses: Buses,
    mut shutdown: Shutdown,
) -> io::Result<()> {
    axum::serve(listener, router(world, buses))
        .with_graceful_shutdown(async move { shutdown.wait().await })
        .await
}

/// A refused request.
#[derive(Debug)]
pub struct ApiError {
    /// 4xx, or 503.
    status: StatusCode,
    /// The request field at fault; empty when it is the whole body or path.
    field: String,
    /// What is wrong.
    message: String,
}

impl ApiError {
    fn new(status: StatusCode, field: &str, message: impl Into<String>) -> Self {
        Self {
            status,
            field: field.to_owned(),
            message: message.into(),
        }
    }

    fn refused(error: ActionError) -> Self {
        Self::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            &error.field,
            error.message,
        )
    }
}

impl From<WorldGone> for ApiError {
    fn from(gone: WorldGone) -> Self {
        Self::new(StatusCode::SERVICE_UNAVAILABLE, "", gone.to_string())
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let error = if self.field.is_empty() {
            self.message
        } else {
            format!("{}: {}", self.field, self.message)
        };
        let body = json!({ "error": error, "field": self.field });
        (self.status, axum::Json(body)).into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

/// Parses a JSON body, naming the field at fault.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, ApiError> {
    let mut de = serde_json::Deserializer::from_slice(body);
    let value = serde_path_to_error::deserialize(&mut de).map_err(|error| {
        let message = error.inner().to_string();
        let mut field = match error.path().to_string() {
            root if root == "." || root == "?" => String::new(),
            path => path,
        };
        // serde names a missing or unknown field in the message, at its parent's path.
        let named = ["missing field `", "unknown field `"]
            .iter()
            .find_map(|prefix| message.strip_prefix(prefix))
            .and_then(|rest| rest.split('`').next());
        if let Some(name) = named
            && !field.ends_with(name)
        {
            if !field.is_empty() {
                field.push('.');
            }
            field.push_str(name);
        }
        if field.is_empty() {
            field = "body".to_owned();
        }
        ApiError::new(StatusCode::BAD_REQUEST, &field, message)
    })?;
    de.end()
        .map_err(|error| ApiError::new(StatusCode::BAD_REQUEST, "body", error.to_string()))?;
    Ok(value)
}

/// Applies `action`, answering `{"ok": true}`, or `201 {"id"}` for an injected fault.
async fn apply(world: &WorldHandle, action: Action) -> ApiResult {
    match world.apply(action).await? {
        Ok(ActionReply::Done) => Ok(axum::Json(json!({ "ok": true })).into_response()),
        Ok(ActionReply::FaultInjected { id }) => {
            Ok((StatusCode::CREATED, axum::Json(json!({ "id": id }))).into_response())
        }
        Err(error) => Err(ApiError::refused(error)),
    }
}

async fn state(State(app): State<AppState>) -> ApiResult {
    Ok(axum::Json(app.world.state().await?).into_response())
}

async fn violations(State(app): State<AppState>) -> ApiResult {
    Ok(axum::Json(app.world.violations().await?).into_response())
}

async fn bus_stats(State(app): State<AppState>) -> ApiResult {
    Ok(axum::Json(app.buses.stats()).into_response())
}

async fn plug(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let spec: EvSpec = parse(&body)?;
    apply(&app.world, Action::Plug(spec)).await
}

/// `POST /ev/unplug`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnplugBody {
    /// The gun the EV leaves.
    gun: u16,
}

async fn unplug(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let UnplugBody { gun } = parse(&body)?;
    apply(&app.world, Action::Unplug { gun }).await
}

/// `POST /rfid`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RfidBody {
    /// The gun whose dispenser reads the card.
    gun: u16,
    /// The card's UID, hex.
    id_tag: String,
}

async fn rfid(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let RfidBody { gun, id_tag } = parse(&body)?;
    apply(&app.world, Action::Rfid { gun, id_tag }).await
}

async fn inject_fault(State(app): State<AppState>, body: Bytes) -> ApiResult {
    let spec: FaultSpec = parse(&body)?;
    apply(&app.world, Action::InjectFault(spec)).await
}

async fn clear_fault(State(app): State<AppState>, Path(id): Path<String>) -> ApiResult {
    let id: u64 = id.parse().map_err(|_| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "id",
            format!("{id:?} is not a fault id (a number)"),
        )
    })?;
    match app.world.apply(Action::ClearFault { id }).await? {
        Ok(_) => Ok(axum::Json(json!({ "ok": true })).into_response()),
        Err(error) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            &error.field,
            error.message,
        )),
    }
}

async fn not_found(uri: axum::http::Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "",
        format!(
            "no such resource {}; see GET /state, POST /ev/plug, POST /ev/unplug, POST /rfid, POST /faults, DELETE /faults/ID, GET /violations, GET /buses",
            uri.path()
        ),
    )
}

#[cfg(test)]
mod tests {
    use serde_json::Value;

    use super::*;

    fn field_of<T: DeserializeOwned + std::fmt::Debug>(body: &str) -> String {
        parse::<T>(body.as_bytes()).expect_err("refused").field
    }

    #[test]
    fn parse_errors_name_the_field() {
        assert_eq!(field_of::<UnplugBody>(r#"{"gun": "x"}"#), "gun");
        assert_eq!(field_of::<UnplugBody>(r#"{}"#), "gun");
        assert_eq!(field_of::<UnplugBody>(r#"{"gun": 1, "plug": 2}"#), "plug");
        assert_eq!(field_of::<UnplugBody>(""), "body");
        assert_eq!(field_of::<UnplugBody>(r#"{"gun": 1} x"#), "body");
        assert_eq!(
            field_of::<FaultSpec>(r#"{"kind": "melt", "target": 1}"#),
            "kind"
        );
    }

    #[test]
    fn a_bare_value_is_just_the_value() {
        let parsed: Value = parse(br#"{"a": 1}"#).expect("parses");
        assert_eq!(parsed, json!({"a": 1}));
    }
}
