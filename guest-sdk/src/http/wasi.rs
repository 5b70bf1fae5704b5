//! Sends a request through `wasi:http/outgoing-handler` and reads the whole
//! response, blocking on the host's pollables rather than spinning.
//!
//! `wasi:http` resources have parent/child lifetimes (a stream belongs to a
//! body, a pollable to what it watches) and the host traps if a parent goes
//! first, so every child here is dropped before its parent is used up.

use super::body::BodyBuffer;
use super::{HttpError, Method, Response, url};
use crate::bindings::wasi::http::outgoing_handler;
use crate::bindings::wasi::http::types::{
    ErrorCode, Fields, FutureIncomingResponse, IncomingBody, IncomingResponse,
    Method as WasiMethod, OutgoingBody, OutgoingRequest, Scheme, http_error_code,
};
use crate::bindings::wasi::io::error::Error as IoError;
use crate::bindings::wasi::io::streams::{InputStream, StreamError};

/// `blocking-write-and-flush` accepts at most 4096 bytes per call.
const WRITE_CHUNK: usize = 4096;

pub(super) fn send(
    method: Method,
    url_text: &str,
    headers: Vec<(String, Vec<u8>)>,
    body: &[u8],
    max_body_bytes: usize,
) -> Result<Response, HttpError> {
    let target = url::parse(url_text)?;
    let destination = format!("{} {}", method.as_str(), url::redacted(url_text));
    let rejected = |what: &str| {
        HttpError::InvalidRequest(format!(
            "{destination}: the host rejected the request's {what}"
        ))
    };
    let failed = |doing: &str, code: ErrorCode| error_from_code(&destination, doing, &code);

    let fields = Fields::from_list(&headers).map_err(|e| rejected(&format!("headers ({e:?})")))?;
    let request = OutgoingRequest::new(fields);
    request
        .set_method(&wasi_method(method))
        .map_err(|()| rejected("method"))?;
    let scheme = if target.https {
        Scheme::Https
    } else {
        Scheme::Http
    };
    request
        .set_scheme(Some(&scheme))
        .map_err(|()| rejected("scheme"))?;
    request
        .set_authority(Some(target.authority))
        .map_err(|()| rejected("host"))?;
    request
        .set_path_with_query(Some(&target.path_with_query))
        .map_err(|()| rejected("path"))?;
    let outgoing_body = request.body().map_err(|()| rejected("body"))?;

    // The body is written after `handle`: the host only drains the body
    // stream once the request is under way, so writing first could block.
    let future = outgoing_handler::handle(request, None).map_err(|code| failed("sending", code))?;
    // A refused destination fails the future at once, and the body stream
    // then closes under the writer: the future's answer is the real reason,
    // so a body that cannot be sent is reported by what the future says.
    if let Err(detail) = write_body(&outgoing_body, body) {
        drop(outgoing_body);
        return Err(denied_or(&future, &destination, || {
            transport(&destination, "writing the request body", detail)
        }));
    }
    if let Err(code) = OutgoingBody::finish(outgoing_body, None) {
        return Err(denied_or(&future, &destination, || {
            failed("finishing the request body", code)
        }));
    }

    let response = wait_for_response(&future).map_err(|e| match e {
        Wait::Code(code) => failed("waiting for the response", code),
        Wait::Taken => transport(
            &destination,
            "waiting for the response",
            "response already taken".into(),
        ),
    })?;
    drop(future);
    read_response(response, max_body_bytes).map_err(|e| match e {
        Read::Http(e) => e,
        Read::Io(doing, detail) => transport(&destination, doing, detail),
    })
}

/// Writes `bytes` in chunks the stream accepts, waiting for each to flush.
fn write_body(body: &OutgoingBody, bytes: &[u8]) -> Result<(), String> {
    let stream = body
        .write()
        .map_err(|()| "the body stream was already taken".to_string())?;
    for chunk in bytes.chunks(WRITE_CHUNK) {
        stream
            .blocking_write_and_flush(chunk)
            .map_err(describe_stream_error)?;
    }
    // `stream` is dropped here, before the caller finishes `body`.
    Ok(())
}

enum Wait {
    Code(ErrorCode),
    Taken,
}

fn wait_for_response(future: &FutureIncomingResponse) -> Result<IncomingResponse, Wait> {
    let ready = future.subscribe();
    loop {
        match future.get() {
            None => ready.block(),
            Some(Ok(Ok(response))) => return Ok(response),
            Some(Ok(Err(code))) => return Err(Wait::Code(code)),
            Some(Err(())) => return Err(Wait::Taken),
        }
    }
}

enum Read {
    Http(HttpError),
    Io(&'static str, String),
}

fn read_response(response: IncomingResponse, max_body_bytes: usize) -> Result<Response, Read> {
    let status = response.status();
    let headers = response.headers().entries();
    let buffer = BodyBuffer::new(max_body_bytes);
    let content_length = headers
        .iter()
        .find(|(name, _)| name.eq_ignore_ascii_case("content-length"))
        .map(|(_, value)| value.as_slice());
    buffer.check_announced(content_length).map_err(Read::Http)?;

    let body = response.consume().map_err(|()| {
        Read::Io(
            "reading the response",
            "the body was already consumed".into(),
        )
    })?;
    let bytes = {
        let stream = body.stream().map_err(|()| {
            Read::Io(
                "reading the response",
                "the body stream was already taken".into(),
            )
        })?;
        read_stream(&stream, buffer)
    };
    // Trailers are of no interest; the stream is gone, so the body may end.
    drop(IncomingBody::finish(body));
    Ok(Response {
        status,
        headers,
        body: bytes?,
    })
}

fn read_stream(stream: &InputStream, mut buffer: BodyBuffer) -> Result<Vec<u8>, Read> {
    let readable = stream.subscribe();
    loop {
        match stream.read(buffer.next_read_len()) {
            Ok(chunk) if chunk.is_empty() => readable.block(),
            Ok(chunk) => buffer.push(&chunk).map_err(Read::Http)?,
            Err(StreamError::Closed) => return Ok(buffer.into_bytes()),
            Err(StreamError::LastOperationFailed(error)) => {
                return Err(Read::Io(
                    "reading the response body",
                    describe_io_error(&error),
                ));
            }
        }
    }
}

fn wasi_method(method: Method) -> WasiMethod {
    match method {
        Method::Get => WasiMethod::Get,
        Method::Head => WasiMethod::Head,
        Method::Post => WasiMethod::Post,
        Method::Put => WasiMethod::Put,
        Method::Patch => WasiMethod::Patch,
        Method::Delete => WasiMethod::Delete,
    }
}

/// After the body could not be sent: [`HttpError::Denied`] if the host
/// refused the destination, else `otherwise`. The body is gone (dropped
/// unfinished, which aborts the request), so the future resolves promptly.
fn denied_or(
    future: &FutureIncomingResponse,
    destination: &str,
    otherwise: impl FnOnce() -> HttpError,
) -> HttpError {
    match wait_for_response(future) {
        Err(Wait::Code(code @ ErrorCode::HttpRequestDenied)) => {
            error_from_code(destination, "sending", &code)
        }
        _ => otherwise(),
    }
}

/// A refused destination is the operator's to fix, so it gets its own kind.
fn error_from_code(destination: &str, doing: &str, code: &ErrorCode) -> HttpError {
    match code {
        ErrorCode::HttpRequestDenied => HttpError::Denied(format!(
            "{destination}: the destination is not granted to this plugin"
        )),
        _ => transport(destination, doing, describe_code(code)),
    }
}

fn transport(destination: &str, doing: &str, detail: String) -> HttpError {
    HttpError::Transport(format!("{destination}: {doing}: {detail}"))
}

/// The error-code's variant and payload, e.g. `ConnectionRefused` or
/// `DnsError(DnsErrorPayload { rcode: Some("NXDOMAIN"), .. })`.
fn describe_code(code: &ErrorCode) -> String {
    let text = format!("{code:?}");
    text.strip_prefix("ErrorCode::")
        .map(str::to_string)
        .unwrap_or(text)
}

fn describe_stream_error(error: StreamError) -> String {
    match error {
        StreamError::Closed => "the stream was closed".to_string(),
        StreamError::LastOperationFailed(error) => describe_io_error(&error),
    }
}

/// An I/O error on an HTTP stream usually wraps an HTTP error-code.
fn describe_io_error(error: &IoError) -> String {
    match http_error_code(error) {
        Some(code) => describe_code(&code),
        None => error.to_debug_string(),
    }
}
