//! The control protocol on any bytes: what a client writes on the control
//! socket, read as the daemon reads it (`dvr::proto::read_line`, bounded
//! lines, through a reader of a buffer size the first byte picks; then
//! `dvr::proto::decode`, the daemon's decoder), each request applied to a
//! model that starts as the north-south test topology (`dvr::testkit::ns_model`)
//! and carries over from line to line, as the daemon's does. Checked on
//! every line:
//!
//! - never a panic;
//! - an undecodable request gets an error reply (invalid request or
//!   unsupported version) with a message, and the reply serialises as one
//!   line;
//! - a rejected `apply` leaves the model as it was: equal, and byte for byte
//!   the same serialisation, its derived index the same as one built anew;
//!   the error has a message;
//! - a committed `apply` bumps the generation by one, names one object per
//!   change, leaves a model that passes `Model::validate`, whose index is
//!   fresh and whose serialisation reads back equal (the journal's way);
//! - `show` and `list` answer from the model without changing it.
#![no_main]

use std::io::BufReader;
use std::sync::OnceLock;

use dvr::model::Model;
use dvr::proto::{self, Decoded, ErrorCode, Line, ListParams, ShowParams};
use libfuzzer_sys::fuzz_target;

/// The start model and its serialisation, made once.
static START: OnceLock<(Model, Vec<u8>)> = OnceLock::new();

/// Lines read from one input at most.
const MAX_LINES: usize = 64;

/// The model one input works on: the start model until a request is
/// applied (cloned then, so inputs that never get that far cost no clone),
/// and the serialisation of the model as it is (a refused change is checked
/// against it byte for byte).
struct State {
    start: &'static (Model, Vec<u8>),
    own: Option<(Model, Vec<u8>)>,
}

impl State {
    fn model(&self) -> &Model {
        self.own.as_ref().map_or(&self.start.0, |o| &o.0)
    }

    fn own(&mut self) -> &mut (Model, Vec<u8>) {
        let start = self.start;
        self.own.get_or_insert_with(|| start.clone())
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&cap, bytes)) = data.split_first() else {
        return;
    };
    let start = START.get_or_init(|| {
        let m = dvr::testkit::ns_model();
        let text = serde_json::to_vec(&m).expect("a model serialises");
        (m, text)
    });
    let mut state = State { start, own: None };
    let mut r = BufReader::with_capacity(1 + usize::from(cap % 64), bytes);
    let mut buf = Vec::new();
    for _ in 0..MAX_LINES {
        match proto::read_line(&mut r, &mut buf, proto::MAX_REQUEST).expect("reading a slice") {
            Line::Complete(line) => request(&mut state, &line),
            Line::Closed | Line::TooLong => break,
        }
    }
});

fn request(state: &mut State, line: &str) {
    match proto::decode(line) {
        Err(resp) => {
            assert!(!resp.ok && resp.result.is_none(), "{resp:?}");
            let e = resp.error.as_ref().expect("an error reply has an error");
            assert!(
                matches!(
                    e.code,
                    ErrorCode::InvalidRequest | ErrorCode::UnsupportedVersion
                ),
                "{e:?}"
            );
            assert!(!e.message.is_empty());
            // What the daemon writes back: it serialises, as one line.
            // (Reading it back would test serde_json, at a quarter of this
            // target's time.)
            let text = serde_json::to_string(&resp).expect("a reply serialises");
            assert!(
                !text.contains('\n'),
                "a reply of more than one line: {text}"
            );
        }
        Ok(Decoded::Apply { changes, .. }) => {
            let (model, text) = state.own();
            let before = model.clone();
            match model.apply(&changes) {
                Ok(applied) => {
                    assert_eq!(model.generation, before.generation + 1);
                    assert_eq!(applied.len(), changes.len());
                    if let Err(e) = model.validate() {
                        panic!("committed {changes:?} leaves an invalid model: {e}");
                    }
                    assert!(model.index_is_fresh(), "stale index after {changes:?}");
                    *text = serde_json::to_vec(&*model).expect("a model serialises");
                    let back: Model = serde_json::from_slice(text).expect("reads back");
                    assert_eq!(&back, model, "a model that does not read back");
                }
                Err(e) => {
                    assert!(!e.0.is_empty(), "a refusal with no message");
                    assert_eq!(
                        *model, before,
                        "refused {changes:?} ({e}) changed the model"
                    );
                    // It serialises as the model did before the request.
                    let after = serde_json::to_vec(&*model).expect("a model serialises");
                    assert!(
                        after == *text,
                        "refused {changes:?} ({e}): not the same bytes"
                    );
                    assert!(model.index_is_fresh(), "refused {changes:?}: stale index");
                }
            }
        }
        Ok(Decoded::Other(req)) => {
            let model = state.model();
            let generation = model.generation;
            match req.method.as_str() {
                "show" => {
                    if let Ok(p) = proto::params::<ShowParams>(req.id, req.params) {
                        match model.show(p.kind, &p.name) {
                            Ok(v) => assert!(!v.is_null()),
                            Err(e) => assert!(!e.0.is_empty()),
                        }
                    }
                }
                "list" => {
                    if let Ok(p) = proto::params::<ListParams>(req.id, req.params) {
                        let _ = model.list(p.kind);
                    }
                }
                _ => {}
            }
            assert_eq!(model.generation, generation);
        }
    }
}
