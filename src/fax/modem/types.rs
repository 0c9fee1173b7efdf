//! The public types of the fax-modem dialogue ([`super::Modem`]): its configuration, the
//! per-class [`Dialect`] tables, what a call reports (sessions, pages, hangups, caller id) and
//! the [`Action`]s and [`Event`]s the machine hands the adapter. No IO, like the machine.

use std::fmt;
use std::time::{Duration, Instant};

use crate::fax::codes::{ModemClass, PageStatus, PostPage};

/// The longest response line kept; the rest of a longer line is dropped.
pub const MAX_LINE: usize = 256;

/// How long each wait may last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timers {
    /// A command's final reply (`OK`/`ERROR`); also the `OK` after a hangup report. 5 s.
    pub command: Duration,
    /// From `ATA` to the `OK` that ends the sender's phase B. 75 s (T.30's T1 is 35 s ± 5, and
    /// the modem needs its own time to answer and train).
    pub answer: Duration,
    /// From `AT+FDR` to `CONNECT` (or the hangup report). 60 s.
    pub page_start: Duration,
    /// Silence during page data before the page is given up. 60 s (mgetty's page timeout).
    pub page_data: Duration,
    /// From `DLE ETX` to the `OK` after `+FET`. 60 s.
    pub post_page: Duration,
    /// How long after a `RING` without the next one the ringing has stopped. 10 s (rings come
    /// every 6 s in Europe and North America).
    pub ring_gap: Duration,
    /// The interval of health checks (`AT`) while idle. 60 s.
    pub health: Duration,
}

impl Default for Timers {
    fn default() -> Self {
        Timers {
            command: Duration::from_secs(5),
            answer: Duration::from_secs(75),
            page_start: Duration::from_secs(60),
            page_data: Duration::from_secs(60),
            post_page: Duration::from_secs(60),
            ring_gap: Duration::from_secs(10),
            health: Duration::from_secs(60),
        }
    }
}

/// Which class to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ClassChoice {
    /// Class 2.0 if `AT+FCLASS=?` offers it, else Class 2.
    #[default]
    Auto,
    /// This class, whatever `AT+FCLASS=?` says (some modems list less than they do).
    Force(ModemClass),
}

/// Serial flow control during a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FlowControl {
    /// RTS/CTS (`AT+FLO=2`).
    #[default]
    Hardware,
    /// XON/XOFF (`AT+FLO=1`).
    Software,
    /// None (idle: commands only).
    Off,
}

/// The order of bits in each byte of page data as the modem delivers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BitOrder {
    /// The first bit on the line is the byte's least significant (T.4's order; TIFF FillOrder 2).
    LsbFirst,
    /// The first bit on the line is the byte's most significant (TIFF FillOrder 1; what G3
    /// decoders read).
    MsbFirst,
}

/// The widest page we accept (advertised in the capabilities).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum PageWidth {
    /// 1728 pixels, 215 mm (mgetty's choice; senders reduce wider pages).
    #[default]
    A4,
    /// Up to 2048 pixels, 255 mm.
    B4,
    /// Up to 2432 pixels, 303 mm.
    A3,
}

/// How to run the modem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub class: ClassChoice,
    /// Our station id (`AT+FLI`): at most 20 printable characters (T.30); others are dropped.
    pub local_id: String,
    /// Answer on this ring (at least 1).
    pub rings: u8,
    /// Accept fine resolution (196 lpi) as well as normal (98 lpi).
    pub fine: bool,
    /// Highest bit rate offered, in bit/s (2400 … 14400).
    pub max_bit_rate: u32,
    pub max_width: PageWidth,
    pub flow_control: FlowControl,
    /// The byte that starts the data after `CONNECT`; `None`: DC2, which Class 2.0 requires and
    /// most Class 2 modems take. Some Class 2 modems want DC1 (HylaFAX's Class 2 default).
    pub data_trigger: Option<u8>,
    /// The bit order the modem really delivers, when it differs from its class's (a Class 2
    /// modem that follows SP-2388-A rather than Rockwell, such as early Multi-Tech ones).
    pub bit_order: Option<BitOrder>,
    /// Read `+FPS`/`+FPTS` line counts in this base instead of the class's (mgetty's
    /// `MQ_FPS_NOT_HEX` quirk: some Class 2.0 modems write decimal).
    pub page_status_radix: Option<u32>,
    pub timers: Timers,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            class: ClassChoice::Auto,
            local_id: String::new(),
            rings: 1,
            fine: true,
            max_bit_rate: 14400,
            max_width: PageWidth::A4,
            flow_control: FlowControl::Hardware,
            data_trigger: None,
            bit_order: None,
            page_status_radix: None,
            timers: Timers::default(),
        }
    }
}

/// What differs between Class 2 and Class 2.0: commands, report names, numbers, bit order.
#[derive(Debug)]
pub struct Dialect {
    pub class: ModemClass,
    /// `AT+FCLASS=…`.
    pub select: &'static str,
    /// Sets our station id, `="…"` appended.
    pub local_id: &'static str,
    /// Sets our capabilities, `=vr,br,wd,ln,df,ec,bf,st` appended.
    pub capabilities: &'static str,
    /// Sets phase C bit order "direct".
    pub bit_order: &'static str,
    /// Sets the modem's phase C timeout (in 100 ms units: 30 = 3 s without data from the line).
    pub phase_c_timeout: &'static str,
    /// Further optional set-up commands.
    pub extra: &'static [&'static str],
    /// Tells the modem the flow control in use, after connect: hardware, software.
    pub flow_control: Option<(&'static str, &'static str)>,
    /// Report names: fax connection, transmitting station id, session parameters, page status,
    /// hangup.
    pub connect: &'static str,
    pub tsi: &'static str,
    pub dcs: &'static str,
    pub page_status: &'static str,
    pub hangup: &'static str,
    /// How page data arrives after the bit order command. Class 2: MSB first, the "Rockwell
    /// bug" that became the norm (HylaFAX `Class2.c++` `recvFillOrder`; mgetty `faxlib.c`
    /// `fax_set_bor`). Class 2.0 with `+FBO=0`: direct, i.e. LSB first as T.4 puts it on the line
    /// (HylaFAX `config/class2.0`).
    pub delivers: BitOrder,
}

/// Class 2 (SP-2388-A).
pub static CLASS2: Dialect = Dialect {
    class: ModemClass::Class2,
    select: "AT+FCLASS=2",
    local_id: "AT+FLID",
    capabilities: "AT+FDCC",
    bit_order: "AT+FBOR=0",
    phase_c_timeout: "AT+FPHCTO=30",
    extra: &[],
    flow_control: None,
    connect: "+FCON",
    tsi: "+FTSI",
    dcs: "+FDCS",
    page_status: "+FPTS",
    hangup: "+FHNG",
    delivers: BitOrder::MsbFirst,
};

/// Class 2.0 (TIA/EIA-592).
pub static CLASS20: Dialect = Dialect {
    class: ModemClass::Class20,
    select: "AT+FCLASS=2.0",
    local_id: "AT+FLI",
    capabilities: "AT+FCC",
    bit_order: "AT+FBO=0",
    phase_c_timeout: "AT+FCT=30",
    // Report TSI/CSI, DCS/DIS and post-page status but not NSF (mgetty's default); stream
    // mode, not packet protocol; no procedure interrupts.
    extra: &["AT+FNR=1,1,1,0", "AT+FPP=0", "AT+FIE=0"],
    flow_control: Some(("AT+FLO=2", "AT+FLO=1")),
    connect: "+FCO",
    tsi: "+FTI",
    dcs: "+FCS",
    page_status: "+FPS",
    hangup: "+FHS",
    delivers: BitOrder::LsbFirst,
};

impl Dialect {
    pub fn of(class: ModemClass) -> &'static Dialect {
        match class {
            ModemClass::Class2 => &CLASS2,
            ModemClass::Class20 => &CLASS20,
        }
    }
}

/// Vertical resolution of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// 98 lines per inch (3.85 l/mm).
    Normal,
    /// 196 lines per inch (7.7 l/mm).
    Fine,
    /// Another code (superfine, inch-based): we do not advertise these.
    Other(u16),
}

impl Resolution {
    pub fn lines_per_inch(self) -> Option<u16> {
        match self {
            Resolution::Normal => Some(98),
            Resolution::Fine => Some(196),
            Resolution::Other(_) => None,
        }
    }
}

/// The page coding of the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataFormat {
    /// 1-D Modified Huffman (T.4): all we advertise.
    Mh,
    /// 2-D Modified READ.
    Mr,
    Uncompressed,
    /// 2-D Modified Modified READ (T.6).
    Mmr,
    Other(u16),
}

/// The session parameters the sender chose (its DCS), as the document side needs them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Session {
    pub resolution: Resolution,
    /// 1728, 2048 or 2432 from the width code; `None` for another code.
    pub width_px: Option<u16>,
    /// In bit/s.
    pub bit_rate: u32,
    pub data_format: DataFormat,
    /// Error correction mode (we do not advertise it).
    pub ecm: bool,
    /// The bit order of the [`Action::PageData`] bytes.
    pub bit_order: BitOrder,
}

/// How a call ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hangup {
    /// The modem's code as reported (`+FHNG` decimal, `+FHS` hex); `None` when the call ended
    /// without one (`NO CARRIER`, a timeout, the port lost).
    pub code: Option<u16>,
    pub class: ModemClass,
    /// The code's meaning from the class's table, or what happened instead.
    pub reason: &'static str,
}

impl Hangup {
    pub(super) fn reported(class: ModemClass, code: u16) -> Hangup {
        Hangup { code: Some(code), class, reason: class.hangup_reason(code).unwrap_or("unknown hangup code") }
    }

    pub(super) fn local(class: ModemClass, reason: &'static str) -> Hangup {
        Hangup { code: None, class, reason }
    }

    /// "Normal and proper end of connection".
    pub fn is_normal(&self) -> bool {
        self.code == Some(0)
    }
}

impl fmt::Display for Hangup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.code {
            Some(code) => {
                write!(f, "{}: {} ({})", self.class.format_code(code), self.reason, self.class.hangup_phase(code))
            }
            None => write!(f, "no hangup code: {}", self.reason),
        }
    }
}

/// Caller id the modem gave between rings. Shown by nothing here ([`fmt::Debug`] says only
/// which fields are present).
#[derive(Clone, Default, PartialEq, Eq)]
pub struct CallerId {
    pub number: Option<String>,
    pub name: Option<String>,
    /// As sent (`MMDD`).
    pub date: Option<String>,
    /// As sent (`HHMM`).
    pub time: Option<String>,
}

impl CallerId {
    pub fn is_empty(&self) -> bool {
        self.number.is_none() && self.name.is_none() && self.date.is_none() && self.time.is_none()
    }
}

impl fmt::Debug for CallerId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("CallerId")
            .field("number", &self.number.is_some())
            .field("name", &self.name.is_some())
            .field("date", &self.date.is_some())
            .field("time", &self.time.is_some())
            .finish()
    }
}

/// How a page ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PageEnd {
    /// 1 for the first page of the call.
    pub page: u32,
    pub status: PageStatus,
    pub more: PostPage,
    /// The sender asked for a procedure interrupt (PRI-MPS, PRI-EOM, PRI-EOP).
    pub interrupt: bool,
    /// Lines and bad lines as the modem counted them (`+FPS:ppr,lc,blc`), when it did.
    pub lines: Option<u32>,
    pub bad_lines: Option<u32>,
    /// Bytes of page data handed over.
    pub bytes: u64,
    /// `DLE x` pairs in the data that were neither data nor the end (dropped).
    pub unknown_escapes: u32,
}

/// Why the modem needs a reset (drop DTR, reopen the port, [`Modem::start`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ResetReason {
    #[error("no reply to {command} within {secs} s: is the modem on and connected, and the port's speed right?")]
    NoReply { command: String, secs: u64 },
    #[error("the modem refused {command} (ERROR): is it a Class 2 or 2.0 fax modem, and the class right?")]
    Refused { command: String },
    #[error("the modem offers no fax class 2 or 2.0 (AT+FCLASS=? said {offered:?}): it needs a Class 2/2.0 fax modem")]
    NoFaxClass { offered: String },
    #[error("the modem did not answer the health check (AT) within {secs} s")]
    HealthCheck { secs: u64 },
    #[error("the modem stopped answering during a call ({waiting_for}); the line is hung up by dropping DTR")]
    Stuck { waiting_for: &'static str },
}

/// Something to log or count. Never carries page content, station or caller ids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Set-up done; the modem waits for calls.
    Initialised {
        class: ModemClass,
        refused: u32,
    },
    /// The class chosen and what `AT+FCLASS=?` offered.
    ClassChosen {
        class: ModemClass,
        offered: String,
        forced: bool,
    },
    /// An optional set-up command was answered `ERROR`: set-up goes on without it.
    CommandRefused {
        command: String,
    },
    Ring {
        count: u8,
    },
    /// Rings stopped before we answered.
    RingsStopped {
        rings: u8,
    },
    /// The modem answered a call by itself (`+FCO` without our `ATA`).
    AnsweredByModem,
    /// `OK` after `AT+FDR` where `CONNECT` was expected: the page is read anyway.
    OkForConnect,
    /// The flow control command was refused (`AT+FLO`): the serial side's setting stays.
    FlowControlRefused,
    /// Bytes before the first page byte (a zero byte or DLE), dropped (mgetty does the same).
    SkippedBeforePage {
        bytes: usize,
    },
    /// A response line that means nothing in the current state, ignored.
    UnexpectedLine {
        state: &'static str,
    },
    /// Bytes arriving while the machine is closed or resetting, ignored.
    Stray {
        bytes: usize,
    },
    /// A response longer than [`MAX_LINE`] was cut.
    LineTooLong,
}

/// What the adapter must do. `Debug` shows no page content.
#[derive(Clone, PartialEq, Eq)]
pub enum Action {
    /// Write these bytes to the modem.
    Write(Vec<u8>),
    /// Set the serial port's flow control (the modem is told separately, by a command).
    SetFlowControl(FlowControl),
    /// Drop DTR, close and reopen the port (with backoff), then call [`Modem::start`].
    Reset {
        why: ResetReason,
    },
    /// We answered (`ATA`).
    CallStarted {
        at: Instant,
    },
    /// Who is sending: its station id (TSI) and the caller id before answering.
    Remote {
        tsi: Option<String>,
        caller_id: CallerId,
    },
    /// The session parameters (again when the sender changes them between pages).
    Session(Session),
    /// Page data, unstuffed, in arrival order, in the [`Session::bit_order`].
    PageData(Vec<u8>),
    /// The page whose data came last is complete.
    PageEnd(PageEnd),
    /// The page whose data came last was cut off: its data is not a page.
    PageAborted {
        page: u32,
        bytes: u64,
    },
    /// The call is over. `complete`: the sender said end of procedure and the modem reported a
    /// normal hangup.
    CallEnded {
        pages: u32,
        hangup: Hangup,
        complete: bool,
    },
    /// The result of an idle health check.
    Health(bool),
    Event(Event),
}

impl fmt::Debug for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Action::Write(bytes) if bytes.iter().all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r') => {
                write!(f, "Write({:?})", String::from_utf8_lossy(bytes))
            }
            Action::Write(bytes) => write!(f, "Write({} bytes)", bytes.len()),
            Action::SetFlowControl(fc) => f.debug_tuple("SetFlowControl").field(fc).finish(),
            Action::Reset { why } => f.debug_struct("Reset").field("why", why).finish(),
            Action::CallStarted { at } => f.debug_struct("CallStarted").field("at", at).finish(),
            Action::Remote { tsi, caller_id } => {
                f.debug_struct("Remote").field("tsi", &tsi.is_some()).field("caller_id", caller_id).finish()
            }
            Action::Session(s) => f.debug_tuple("Session").field(s).finish(),
            Action::PageData(bytes) => write!(f, "PageData({} bytes)", bytes.len()),
            Action::PageEnd(p) => f.debug_tuple("PageEnd").field(p).finish(),
            Action::PageAborted { page, bytes } => {
                f.debug_struct("PageAborted").field("page", page).field("bytes", bytes).finish()
            }
            Action::CallEnded { pages, hangup, complete } => f
                .debug_struct("CallEnded")
                .field("pages", pages)
                .field("hangup", hangup)
                .field("complete", complete)
                .finish(),
            Action::Health(ok) => f.debug_tuple("Health").field(ok).finish(),
            Action::Event(e) => f.debug_tuple("Event").field(e).finish(),
        }
    }
}

/// What the modem is doing, for `status`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModemState {
    /// Not started (the port is not open).
    Closed,
    Initialising,
    Idle,
    Ringing {
        rings: u8,
    },
    /// Answered, negotiating, or between pages.
    InCall {
        pages: u32,
    },
    ReceivingPage {
        page: u32,
    },
    /// A reset was asked for and [`Modem::start`] not yet called.
    Resetting,
}

/// For `status`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    pub state: ModemState,
    pub class: Option<ModemClass>,
    /// The last reset reason, abnormal hangup or refused command.
    pub last_error: Option<String>,
    pub calls: u64,
    pub pages: u64,
}
