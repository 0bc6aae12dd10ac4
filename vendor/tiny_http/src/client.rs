use ascii::AsciiString;

use std::io::Error as IoError;
use std::io::Result as IoResult;
use std::io::{BufRead, BufReader, BufWriter, ErrorKind, Read};

use std::net::SocketAddr;
use std::str::FromStr;

use crate::common::{HTTPVersion, Method};
use crate::util::limits::{
    HeadMark, InFlight, ReadDeadline, HEADER_LINES_MAX, HEAD_BYTES_MAX, HEAD_DEADLINE, LINE_BYTES_MAX,
};
use crate::util::RefinedTcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;
use crate::util::{SequentialReader, SequentialReaderBuilder, SequentialWriterBuilder};
use crate::Request;

/// A ClientConnection is an object that will store a socket to a client
/// and return Request objects.
pub struct ClientConnection {
    // address of the client
    remote_addr: IoResult<Option<SocketAddr>>,

    // sequence of Readers to the stream, so that the data is not read in
    //  the wrong order
    source: SequentialReaderBuilder<BufReader<RefinedTcpStream>>,

    // sequence of Writers to the stream, to avoid writing response #2 before
    //  response #1
    sink: SequentialWriterBuilder<BufWriter<RefinedTcpStream>>,

    // Reader to read the next header from
    next_header_source: SequentialReader<BufReader<RefinedTcpStream>>,

    // set to true if we know that the previous request is the last one
    no_more_requests: bool,

    // true if the connection goes through SSL
    secure: bool,

    // osapi patch: whether this connection waits for a head (for eviction at the connection cap)
    mark: Option<Arc<HeadMark>>,

    // osapi patch: set when the previous request's streamed body was dropped unread
    body_abandoned: Arc<AtomicBool>,

    // osapi patch: the deadline of the body being read (set by the API, cleared before the next head)
    deadline: ReadDeadline,
}

/// osapi patch: what one request head has used so far of its limits.
struct HeadBudget {
    started: Instant,
    bytes: usize,
}

/// Error that can happen when reading a request.
#[derive(Debug)]
enum ReadError {
    WrongRequestLine,
    WrongHeader(HTTPVersion),
    /// the client sent an unrecognized `Expect` header
    ExpectationFailed(HTTPVersion),
    ReadIoError(IoError),
    /// osapi patch: a line, the head or its number of lines over the limits: 431
    HeadTooLarge(&'static str),
    /// osapi patch: the head began but did not end within `HEAD_DEADLINE`: 408
    HeadTimeout,
    /// osapi patch: the previous body was not read to its end: the connection closes
    BodyAbandoned,
    /// osapi patch: a request line or header line that is not ASCII: 400 (upstream: closed unanswered)
    NotAscii,
}

/// osapi patch: the response buffer of a connection (upstream: 1 KiB). A head and a body that fit
/// are written at once; a larger body goes out in pieces as before.
pub(crate) const RESPONSE_BUFFER: usize = 4096;

impl ClientConnection {
    /// Creates a new `ClientConnection` that takes ownership of the `TcpStream`.
    pub fn new(
        write_socket: RefinedTcpStream,
        mut read_socket: RefinedTcpStream,
        mark: Option<Arc<HeadMark>>,
    ) -> ClientConnection {
        let remote_addr = read_socket.peer_addr();
        let secure = read_socket.secure();
        let deadline = read_socket.deadline();

        let mut source = SequentialReaderBuilder::new(BufReader::with_capacity(1024, read_socket));
        let first_header = source.next().unwrap();

        ClientConnection {
            source,
            // osapi patch: room for a response's head and a small body together, so they leave in one
            // write (one TCP segment) instead of the head alone first.
            sink: SequentialWriterBuilder::new(BufWriter::with_capacity(
                RESPONSE_BUFFER,
                write_socket,
            )),
            remote_addr,
            next_header_source: first_header,
            no_more_requests: false,
            secure,
            mark,
            body_abandoned: Arc::default(),
            deadline,
        }
    }

    /// true if the connection is HTTPS
    pub fn secure(&self) -> bool {
        self.secure
    }

    /// Reads the next line from self.next_header_source.
    ///
    /// Reads until `CRLF` is reached. The next read will start
    ///  at the first byte of the new line.
    ///
    /// osapi patch: at most `LINE_BYTES_MAX` per line and `HEAD_BYTES_MAX` per head are read (upstream
    /// read a line of any length into memory), and a head that began must end within `HEAD_DEADLINE`.
    /// osapi patch: the next line of the head, given to `parse` as text (ASCII only) where it lies,
    /// in the reader's buffer when it is whole there, so a line costs no allocation of its own.
    fn read_next_line<R>(
        &mut self,
        budget: &mut HeadBudget,
        parse: impl FnOnce(&str) -> R,
    ) -> Result<R, ReadError> {
        // osapi patch: scans what the buffer holds (one deadline check per fill, i.e. before each
        // socket read, which is where time can pass) instead of a clock read and a reader call per byte.
        let mut buf = Vec::new();

        loop {
            if budget.bytes > 0 && budget.started.elapsed() > HEAD_DEADLINE {
                return Err(ReadError::HeadTimeout);
            }
            let Some(reader) = self.next_header_source.inner_mut() else {
                return Err(ReadError::BodyAbandoned);
            };
            let available = match reader.fill_buf() {
                Ok([]) => {
                    return Err(ReadError::ReadIoError(IoError::new(
                        ErrorKind::ConnectionAborted,
                        "Unexpected EOF",
                    )))
                }
                Ok(available) => available,
                Err(e) if e.kind() == ErrorKind::Interrupted => continue,
                Err(e)
                    if budget.bytes > 0
                        && matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) =>
                {
                    return Err(ReadError::HeadTimeout)
                }
                Err(e) => return Err(ReadError::ReadIoError(e)),
            };

            // osapi patch: a whole line already in the buffer (the usual case) is taken in one piece,
            // into a buffer of its own size, rather than byte by byte into a growing one. Only a line
            // that ends in CRLF within both bounds takes this path; anything else goes the long way.
            if buf.is_empty() {
                if let Some(end) = available.iter().position(|&b| b == b'\n') {
                    if end > 0
                        && available[end - 1] == b'\r'
                        && end < LINE_BYTES_MAX
                        && budget.bytes + end < HEAD_BYTES_MAX
                    {
                        let parsed = ascii_line(&available[..end - 1]).map(parse);
                        budget.bytes += end + 1;
                        reader.consume(end + 1);
                        return parsed;
                    }
                }
            }

            let mut used = 0;
            let mut outcome = None;
            for &byte in available {
                used += 1;
                budget.bytes += 1;

                if byte == b'\n' && buf.last() == Some(&b'\r') {
                    buf.pop(); // removing the '\r'
                    outcome = Some(Ok(()));
                    break;
                }
                if buf.len() >= LINE_BYTES_MAX {
                    outcome = Some(Err(ReadError::HeadTooLarge(
                        "a request line or header line is longer than 8192 bytes",
                    )));
                    break;
                }
                if budget.bytes > HEAD_BYTES_MAX {
                    outcome = Some(Err(ReadError::HeadTooLarge(
                        "the request head is larger than 65536 bytes",
                    )));
                    break;
                }

                buf.push(byte);
            }
            reader.consume(used);
            match outcome {
                None => continue,
                Some(Err(e)) => return Err(e),
                Some(Ok(())) => return ascii_line(&buf).map(parse),
            }
        }
    }

    /// Reads a request from the stream.
    /// Blocks until the header has been read.
    fn read(&mut self) -> Result<Request, ReadError> {
        // osapi patch: wait until the previous request is done with the stream; if it left its body
        // unread, the next head would start inside that body: close instead of reading it.
        if !self.next_header_source.wait_turn() {
            return Err(ReadError::BodyAbandoned);
        }
        if self.body_abandoned.load(Ordering::SeqCst) {
            return Err(ReadError::BodyAbandoned);
        }
        self.deadline.set(None);
        if let Some(mark) = &self.mark {
            mark.waiting();
        }
        let mut budget = HeadBudget {
            started: Instant::now(),
            bytes: 0,
        };
        let (method, path, version, headers) = {
            // reading the request line
            let (method, path, version) = {
                self.read_next_line(&mut budget, |line| parse_request_line(line.trim()))??
            };

            // getting all headers
            let headers = {
                let mut headers = Vec::with_capacity(8);
                loop {
                    let header = self.read_next_line(&mut budget, |line| {
                        (!line.is_empty()).then(|| crate::Header::from_str(line.trim()))
                    })?;
                    let Some(header) = header else {
                        break;
                    };
                    if headers.len() >= HEADER_LINES_MAX {
                        return Err(ReadError::HeadTooLarge("more than 100 header lines"));
                    }
                    headers.push(match header {
                        Ok(h) => h,
                        _ => return Err(ReadError::WrongHeader(version)),
                    });
                }

                headers
            };

            (method, path, version, headers)
        };
        // osapi patch: the connection stays evictable (as waiting for a head) until the API has
        // authorized the request (`Request::hold_connection`): a head without a valid token cannot
        // hold a place at the connection cap.
        let writer = self.sink.next().unwrap();

        // follow-up for next potential request
        let mut data_source = self.source.next().unwrap();
        std::mem::swap(&mut self.next_header_source, &mut data_source);

        // building the next reader
        let request = crate::request::new_request(
            self.secure,
            method,
            path,
            version.clone(),
            headers,
            // osapi patch: a peer address that could not be read is None, not a panic
            self.remote_addr.as_ref().ok().copied().flatten(),
            data_source,
            writer,
            self.body_abandoned.clone(),
        )
        .map(|rq| rq.with_edge(InFlight::new(self.mark.clone()), self.deadline.clone()))
        .map_err(|e| {
            use crate::request;
            match e {
                request::RequestCreationError::CreationIoError(e) => ReadError::ReadIoError(e),
                request::RequestCreationError::ExpectationFailed => {
                    ReadError::ExpectationFailed(version)
                }
            }
        })?;

        // return the request
        Ok(request)
    }
}

impl Iterator for ClientConnection {
    type Item = Request;

    /// Blocks until the next Request is available.
    /// Returns None when no new Requests will come from the client.
    fn next(&mut self) -> Option<Request> {
        use crate::{Response, StatusCode};

        // the client sent a "connection: close" header in this previous request
        //  or is using HTTP 1.0, meaning that no new request will come
        if self.no_more_requests {
            return None;
        }

        loop {
            let rq = match self.read() {
                // osapi patch: each refusal is a JSON answer naming what was wrong (upstream: an empty
                // 400, 408 or 417), written without unwrapping the writer; then the connection closes,
                // since where the next request would start is not known.
                Err(ReadError::WrongRequestLine) => {
                    refuse(
                        self.sink.next(),
                        400,
                        "bad request",
                        "the request line is not METHOD TARGET HTTP/VERSION",
                    );
                    return None;
                }

                Err(ReadError::WrongHeader(_)) => {
                    refuse(
                        self.sink.next(),
                        400,
                        "bad request",
                        "a header line is not NAME: VALUE",
                    );
                    return None;
                }

                Err(ReadError::NotAscii) => {
                    refuse(
                        self.sink.next(),
                        400,
                        "bad request",
                        "a request line or header line is not ASCII",
                    );
                    return None;
                }

                Err(ReadError::ReadIoError(ref err)) if err.kind() == ErrorKind::TimedOut => {
                    refuse(
                        self.sink.next(),
                        408,
                        "request timeout",
                        "the request head did not arrive in time",
                    );
                    return None;
                }

                Err(ReadError::ExpectationFailed(_)) => {
                    refuse(
                        self.sink.next(),
                        417,
                        "expectation failed",
                        "the only Expect this server knows is 100-continue",
                    );
                    return None;
                }

                // osapi patch: the head limits and deadline answer 431 and 408 (upstream's 408 arm
                // above never matched on Linux, where a read timeout is WouldBlock), then close.
                Err(ReadError::HeadTooLarge(what)) => {
                    refuse(self.sink.next(), 431, "request header fields too large", what);
                    return None;
                }

                Err(ReadError::HeadTimeout) => {
                    refuse(
                        self.sink.next(),
                        408,
                        "request timeout",
                        "the request head did not arrive within 10 s",
                    );
                    return None;
                }

                Err(ReadError::BodyAbandoned) => return None,

                Err(ReadError::ReadIoError(_)) => return None,

                Ok(rq) => rq,
            };

            // checking HTTP version
            if *rq.http_version() > (1, 1) {
                // osapi patch: no unwrap of the writer.
                if let Some(writer) = self.sink.next() {
                    let response = Response::from_string(
                        "This server only supports HTTP versions 1.0 and 1.1".to_owned(),
                    )
                    .with_status_code(StatusCode(505));
                    response
                        .raw_print(writer, HTTPVersion(1, 1), &[], false, None)
                        .ok();
                }
                continue;
            }

            // updating the status of the connection
            let connection_header = rq
                .headers()
                .iter()
                .find(|h| h.field.equiv("Connection"))
                .map(|h| h.value.as_str());

            let lowercase = connection_header.map(|h| h.to_ascii_lowercase());

            match lowercase {
                Some(ref val) if val.contains("close") => self.no_more_requests = true,
                Some(ref val) if val.contains("upgrade") => self.no_more_requests = true,
                Some(ref val)
                    if !val.contains("keep-alive") && *rq.http_version() == HTTPVersion(1, 0) =>
                {
                    self.no_more_requests = true
                }
                None if *rq.http_version() == HTTPVersion(1, 0) => self.no_more_requests = true,
                _ => (),
            };

            // returning the request
            return Some(rq);
        }
    }
}

/// osapi patch: a JSON error answer (the API's shape) before the connection is closed.
fn refuse<W: std::io::Write>(writer: Option<W>, code: u16, error: &str, details: &str) {
    use crate::{Header, Response, StatusCode};
    let Some(mut writer) = writer else { return };
    let body = format!(
        "{{\"error\":\"{}\",\"details\":\"{}\",\"code\":{}}}",
        error, details, code
    );
    let mut response = Response::from_data(body.into_bytes()).with_status_code(StatusCode(code));
    if let Ok(h) = Header::from_bytes(&b"Content-Type"[..], &b"application/json"[..]) {
        response.add_header(h);
    }
    if response
        .raw_print(&mut writer, HTTPVersion(1, 1), &[], false, None)
        .is_ok()
    {
        writer.flush().ok();
    }
}

/// Parses a "HTTP/1.1" string.
fn parse_http_version(version: &str) -> Result<HTTPVersion, ReadError> {
    let (major, minor) = match version {
        "HTTP/0.9" => (0, 9),
        "HTTP/1.0" => (1, 0),
        "HTTP/1.1" => (1, 1),
        "HTTP/2.0" => (2, 0),
        "HTTP/3.0" => (3, 0),
        _ => return Err(ReadError::WrongRequestLine),
    };

    Ok(HTTPVersion(major, minor))
}

/// Parses the request line of the request.
/// eg. GET / HTTP/1.1
fn parse_request_line(line: &str) -> Result<(Method, String, HTTPVersion), ReadError> {
    let mut parts = line.split(' ');

    let method = parts.next().and_then(|w| w.parse().ok());
    let path = parts.next().map(ToOwned::to_owned);
    let version = parts.next().and_then(|w| parse_http_version(w).ok());

    method
        .and_then(|method| Some((method, path?, version?)))
        .ok_or(ReadError::WrongRequestLine)
}

/// A head line read, as the ASCII it must be.
fn ascii_line(line: &[u8]) -> Result<&str, ReadError> {
    match line.is_ascii() {
        // ASCII is UTF-8: never the error arm.
        true => std::str::from_utf8(line).map_err(|_| not_ascii()),
        false => Err(not_ascii()),
    }
}

fn not_ascii() -> ReadError {
    ReadError::NotAscii
}

#[cfg(test)]
mod test {
    #[test]
    fn test_parse_request_line() {
        let (method, path, ver) = super::parse_request_line("GET /hello HTTP/1.1").unwrap();

        assert!(method == crate::Method::Get);
        assert!(path == "/hello");
        assert!(ver == crate::common::HTTPVersion(1, 1));

        assert!(super::parse_request_line("GET /hello").is_err());
        assert!(super::parse_request_line("qsd qsd qsd").is_err());
    }
}
