//! The serial ports of this machine, as a field tech needs to see them to write a config: the
//! device, the `/dev/serial/by-id` path that survives re-plugging (the one to put in a config),
//! the driver, the USB adapter's vendor, product and serial number, and whether the current
//! user may open it.
//!
//! Read from sysfs (`/sys/class/tty`) and `/dev`, given as roots so that tests run on a tree of
//! real files built to look like them.

use std::path::{Path, PathBuf};

use serde::Serialize;

/// One serial port.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Port {
    /// `/dev/ttyUSB0`.
    pub device: PathBuf,
    /// `/dev/serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0`, when udev made one.
    pub by_id: Option<PathBuf>,
    /// The kernel driver: `ftdi_sio`, `pl2303`, `ch341`, `cdc_acm`, `serial8250`.
    pub driver: Option<String>,
    /// The USB device behind it, for adapters.
    pub usb: Option<Usb>,
    /// Whether the current user may open it for reading and writing.
    pub accessible: bool,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Usb {
    /// `0403` (FTDI), `067b` (Prolific), `1a86` (QinHeng, CH340), ...
    pub vendor_id: String,
    pub product_id: String,
    pub manufacturer: Option<String>,
    pub product: Option<String>,
    /// The adapter's serial number: what tells two identical adapters apart (udev rules).
    pub serial: Option<String>,
}

/// The serial ports under `sys` (normally `/sys`) with device nodes under `dev` (`/dev`): USB
/// adapters (`ttyUSB*`), USB modems and CDC devices (`ttyACM*`), on-board UARTs (`ttyS*`, only
/// those the kernel found a UART behind, and `ttyAMA*`/`ttymxc*` on ARM boards). Sorted by device.
pub fn list(sys: &Path, dev: &Path) -> Vec<Port> {
    let by_id = by_id_links(&dev.join("serial/by-id"));
    let Ok(entries) = std::fs::read_dir(sys.join("class/tty")) else { return Vec::new() };
    let mut ports: Vec<Port> = entries
        .flatten()
        .filter_map(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            let class = e.path();
            if !is_serial(&name, &class) {
                return None;
            }
            let device_dir = std::fs::canonicalize(class.join("device")).ok();
            let driver = device_dir
                .as_ref()
                .and_then(|d| std::fs::canonicalize(d.join("driver")).ok())
                .and_then(|d| d.file_name().map(|n| n.to_string_lossy().into_owned()));
            let usb = device_dir.as_deref().and_then(usb_device);
            let device = dev.join(&name);
            let by_id = by_id.iter().find(|(_, target)| *target == device).map(|(link, _)| link.clone());
            let accessible =
                nix::unistd::access(&device, nix::unistd::AccessFlags::R_OK | nix::unistd::AccessFlags::W_OK).is_ok();
            Some(Port { device, by_id, driver, usb, accessible })
        })
        .collect();
    ports.sort_by(|a, b| a.device.cmp(&b.device));
    ports
}

fn is_serial(name: &str, class: &Path) -> bool {
    if name.starts_with("ttyUSB")
        || name.starts_with("ttyACM")
        || name.starts_with("ttyAMA")
        || name.starts_with("ttymxc")
    {
        return true;
    }
    if name.starts_with("ttyS") {
        // PCs list ttyS0-31 whether a UART is there or not; `type` 0 means none.
        return std::fs::read_to_string(class.join("type")).map(|t| t.trim() != "0").unwrap_or(false);
    }
    false
}

/// The USB device above a tty's device directory: the nearest ancestor with `idVendor`.
fn usb_device(device_dir: &Path) -> Option<Usb> {
    let read = |dir: &Path, f: &str| std::fs::read_to_string(dir.join(f)).ok().map(|s| s.trim().to_string());
    device_dir.ancestors().take(6).find(|d| d.join("idVendor").is_file()).map(|d| Usb {
        vendor_id: read(d, "idVendor").unwrap_or_default(),
        product_id: read(d, "idProduct").unwrap_or_default(),
        manufacturer: read(d, "manufacturer"),
        product: read(d, "product"),
        serial: read(d, "serial"),
    })
}

/// `/dev/serial/by-id` links and the device each points at (`/dev/ttyUSB0`).
fn by_id_links(dir: &Path) -> Vec<(PathBuf, PathBuf)> {
    let Ok(entries) = std::fs::read_dir(dir) else { return Vec::new() };
    entries
        .flatten()
        .filter_map(|e| {
            let link = e.path();
            let target = std::fs::read_link(&link).ok()?;
            let target = if target.is_absolute() { target } else { dir.join(target) };
            // `../../ttyUSB0` relative to the link: resolve it lexically (the device node may be
            // gone, and a test tree has no real device).
            let mut resolved = PathBuf::new();
            for part in target.components() {
                match part {
                    std::path::Component::ParentDir => {
                        resolved.pop();
                    }
                    other => resolved.push(other),
                }
            }
            Some((link, resolved))
        })
        .collect()
}

/// Whether the current user is in the group that owns `device` (for the hint when it is not
/// accessible): the group's name, when it can be told.
pub fn owner_group(device: &Path) -> Option<String> {
    use std::os::unix::fs::MetadataExt;
    let gid = std::fs::metadata(device).ok()?.gid();
    nix::unistd::Group::from_gid(nix::unistd::Gid::from_raw(gid)).ok().flatten().map(|g| g.name)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn write(path: &Path, text: &str) {
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, text).unwrap();
    }

    /// A sysfs and /dev laid out as the kernel and udev lay them out for an FTDI adapter, a CDC
    /// modem, a real UART and a ttyS with no UART behind it.
    fn machine(root: &Path) -> (PathBuf, PathBuf) {
        let sys = root.join("sys");
        let dev = root.join("dev");
        // FTDI: usb device 1-1, interface 1-1:1.0, port ttyUSB0 (driver ftdi_sio).
        let usb = sys.join("devices/pci0000:00/0000:00:14.0/usb1/1-1");
        write(&usb.join("idVendor"), "0403\n");
        write(&usb.join("idProduct"), "6001\n");
        write(&usb.join("manufacturer"), "FTDI\n");
        write(&usb.join("product"), "FT232R USB UART\n");
        write(&usb.join("serial"), "A50285BI\n");
        let port = usb.join("1-1:1.0/ttyUSB0");
        std::fs::create_dir_all(port.join("tty/ttyUSB0")).unwrap();
        std::fs::create_dir_all(sys.join("bus/usb-serial/drivers/ftdi_sio")).unwrap();
        symlink(sys.join("bus/usb-serial/drivers/ftdi_sio"), port.join("driver")).unwrap();
        symlink(&port, port.join("tty/ttyUSB0/device")).unwrap();
        // CDC ACM: the tty's device is the interface itself.
        let modem = sys.join("devices/pci0000:00/0000:00:14.0/usb1/1-2");
        write(&modem.join("idVendor"), "0572\n");
        write(&modem.join("idProduct"), "1329\n");
        let iface = modem.join("1-2:1.0");
        std::fs::create_dir_all(iface.join("tty/ttyACM0")).unwrap();
        std::fs::create_dir_all(sys.join("bus/usb/drivers/cdc_acm")).unwrap();
        symlink(sys.join("bus/usb/drivers/cdc_acm"), iface.join("driver")).unwrap();
        symlink(&iface, iface.join("tty/ttyACM0/device")).unwrap();
        // UARTs: ttyS0 real (type 4), ttyS1 nothing behind it (type 0).
        std::fs::create_dir_all(sys.join("bus/platform/drivers/serial8250")).unwrap();
        std::fs::create_dir_all(sys.join("devices/platform/serial8250")).unwrap();
        symlink(sys.join("bus/platform/drivers/serial8250"), sys.join("devices/platform/serial8250/driver")).unwrap();
        for (n, t) in [("ttyS0", "4"), ("ttyS1", "0")] {
            let d = sys.join(format!("devices/platform/serial8250/tty/{n}"));
            write(&d.join("type"), t);
            symlink(sys.join("devices/platform/serial8250"), d.join("device")).unwrap();
        }
        std::fs::create_dir_all(sys.join("class/tty")).unwrap();
        symlink(port.join("tty/ttyUSB0"), sys.join("class/tty/ttyUSB0")).unwrap();
        symlink(iface.join("tty/ttyACM0"), sys.join("class/tty/ttyACM0")).unwrap();
        symlink(sys.join("devices/platform/serial8250/tty/ttyS0"), sys.join("class/tty/ttyS0")).unwrap();
        symlink(sys.join("devices/platform/serial8250/tty/ttyS1"), sys.join("class/tty/ttyS1")).unwrap();
        std::fs::create_dir_all(sys.join("devices/virtual/tty/tty0")).unwrap();
        symlink(sys.join("devices/virtual/tty/tty0"), sys.join("class/tty/tty0")).unwrap();
        // /dev: the nodes (plain files stand in) and udev's by-id link.
        for n in ["ttyUSB0", "ttyACM0", "ttyS0", "ttyS1", "tty0"] {
            write(&dev.join(n), "");
        }
        std::fs::create_dir_all(dev.join("serial/by-id")).unwrap();
        symlink("../../ttyUSB0", dev.join("serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0")).unwrap();
        (sys, dev)
    }

    #[test]
    fn adapters_modems_and_uarts_with_what_a_config_needs() {
        let root = tempfile::tempdir().unwrap();
        let (sys, dev) = machine(root.path());
        let ports = list(&sys, &dev);
        let names: Vec<String> = ports.iter().map(|p| p.device.file_name().unwrap().to_string_lossy().into()).collect();
        assert_eq!(names, ["ttyACM0", "ttyS0", "ttyUSB0"], "no ttyS without a UART, no virtual consoles");

        let ftdi = &ports[2];
        assert_eq!(ftdi.driver.as_deref(), Some("ftdi_sio"));
        assert_eq!(
            ftdi.by_id.as_deref(),
            Some(dev.join("serial/by-id/usb-FTDI_FT232R_USB_UART_A50285BI-if00-port0").as_path())
        );
        let usb = ftdi.usb.as_ref().unwrap();
        assert_eq!((usb.vendor_id.as_str(), usb.product_id.as_str()), ("0403", "6001"));
        assert_eq!(usb.serial.as_deref(), Some("A50285BI"));
        assert_eq!(usb.product.as_deref(), Some("FT232R USB UART"));

        let modem = &ports[0];
        assert_eq!(modem.driver.as_deref(), Some("cdc_acm"));
        assert_eq!(modem.usb.as_ref().map(|u| u.vendor_id.as_str()), Some("0572"));
        assert_eq!(modem.by_id, None);
        let uart = &ports[1];
        assert_eq!((uart.driver.as_deref(), uart.usb.is_none()), (Some("serial8250"), true));
    }

    #[test]
    fn a_machine_without_sysfs_has_no_ports_rather_than_an_error() {
        let root = tempfile::tempdir().unwrap();
        assert!(list(&root.path().join("sys"), &root.path().join("dev")).is_empty());
    }
}
