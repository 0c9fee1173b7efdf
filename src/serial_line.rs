//! A serial line's settings as words: what an instrument profile and a source's `serial`
//! table both name. Pure types; opening a port with them is `crate::serial`.

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DataBits {
    Seven,
    Eight,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StopBits {
    One,
    Two,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FlowControl {
    None,
    /// Hardware handshake on RTS/CTS.
    RtsCts,
    /// Software handshake (XON/XOFF in the data).
    XonXoff,
}
