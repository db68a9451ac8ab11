"""Code values of PTP-IP (CIPA DC-X005) and PTP (ISO 15740).

The PTP-IP text hides its values as ``0x0000NNNN*``; these are the values every
deployed implementation uses (libgphoto2, Wireshark, camera firmware).
"""

from __future__ import annotations

import enum

__all__ = [
    "ANONYMOUS_GUID",
    "DEFAULT_PORT",
    "MAX_FRIENDLY_NAME_UNITS",
    "NO_TRANSACTION",
    "PROTOCOL_VERSION",
    "UNKNOWN_LENGTH",
    "AccessCapability",
    "AssociationType",
    "DataPhase",
    "DataType",
    "DevicePropCode",
    "EventCode",
    "FailReason",
    "FilesystemType",
    "ObjectFormat",
    "OperationCode",
    "PacketType",
    "ProtectionStatus",
    "ResponseCode",
    "StorageType",
    "code_name",
    "version_major",
    "version_minor",
]

#: TCP port approved by IANA for PTP-IP (spec section 4).
DEFAULT_PORT = 15740

#: Binary protocol version 1.0: major in the high 16 bits, minor in the low 16.
PROTOCOL_VERSION = 0x00010000

#: The all-0xFF initiator GUID means "anonymous" (spec 2.3.1, 5.3).
ANONYMOUS_GUID = b"\xff" * 16

#: Transaction id used where none applies (spec 2.3.6).
NO_TRANSACTION = 0xFFFFFFFF

#: Total data length meaning "unknown" in a Start Data packet (spec 2.3.9).
UNKNOWN_LENGTH = 0xFFFFFFFFFFFFFFFF

#: Longest friendly name on the wire, in UTF-16 code units, NUL included.
MAX_FRIENDLY_NAME_UNITS = 40


def version_major(version: int) -> int:
    return (version >> 16) & 0xFFFF


def version_minor(version: int) -> int:
    return version & 0xFFFF


class PacketType(enum.IntEnum):
    INIT_COMMAND_REQUEST = 1
    INIT_COMMAND_ACK = 2
    INIT_EVENT_REQUEST = 3
    INIT_EVENT_ACK = 4
    INIT_FAIL = 5
    OPERATION_REQUEST = 6
    OPERATION_RESPONSE = 7
    EVENT = 8
    START_DATA = 9
    DATA = 10
    CANCEL = 11
    END_DATA = 12
    PROBE_REQUEST = 13
    PROBE_RESPONSE = 14


class DataPhase(enum.IntEnum):
    NO_DATA_OR_DATA_IN = 1
    DATA_OUT = 2
    UNKNOWN = 3


class FailReason(enum.IntEnum):
    REJECTED_INITIATOR = 1
    BUSY = 2
    UNSPECIFIED = 3


class OperationCode(enum.IntEnum):
    GetDeviceInfo = 0x1001
    OpenSession = 0x1002
    CloseSession = 0x1003
    GetStorageIDs = 0x1004
    GetStorageInfo = 0x1005
    GetNumObjects = 0x1006
    GetObjectHandles = 0x1007
    GetObjectInfo = 0x1008
    GetObject = 0x1009
    GetThumb = 0x100A
    DeleteObject = 0x100B
    SendObjectInfo = 0x100C
    SendObject = 0x100D
    InitiateCapture = 0x100E
    FormatStore = 0x100F
    ResetDevice = 0x1010
    SelfTest = 0x1011
    SetObjectProtection = 0x1012
    PowerDown = 0x1013
    GetDevicePropDesc = 0x1014
    GetDevicePropValue = 0x1015
    SetDevicePropValue = 0x1016
    ResetDevicePropValue = 0x1017
    TerminateOpenCapture = 0x1018
    MoveObject = 0x1019
    CopyObject = 0x101A
    GetPartialObject = 0x101B
    InitiateOpenCapture = 0x101C
    # PTP 1.1 (ISO 15740:2008)
    GetStreamInfo = 0x1024
    GetStream = 0x1025


class ResponseCode(enum.IntEnum):
    OK = 0x2001
    GeneralError = 0x2002
    SessionNotOpen = 0x2003
    InvalidTransactionID = 0x2004
    OperationNotSupported = 0x2005
    ParameterNotSupported = 0x2006
    IncompleteTransfer = 0x2007
    InvalidStorageID = 0x2008
    InvalidObjectHandle = 0x2009
    DevicePropNotSupported = 0x200A
    InvalidObjectFormatCode = 0x200B
    StoreFull = 0x200C
    ObjectWriteProtected = 0x200D
    StoreReadOnly = 0x200E
    AccessDenied = 0x200F
    NoThumbnailPresent = 0x2010
    SelfTestFailed = 0x2011
    PartialDeletion = 0x2012
    StoreNotAvailable = 0x2013
    SpecificationByFormatUnsupported = 0x2014
    NoValidObjectInfo = 0x2015
    InvalidCodeFormat = 0x2016
    UnknownVendorCode = 0x2017
    CaptureAlreadyTerminated = 0x2018
    DeviceBusy = 0x2019
    InvalidParentObject = 0x201A
    InvalidDevicePropFormat = 0x201B
    InvalidDevicePropValue = 0x201C
    InvalidParameter = 0x201D
    SessionAlreadyOpen = 0x201E
    TransactionCancelled = 0x201F
    SpecificationOfDestinationUnsupported = 0x2020


class EventCode(enum.IntEnum):
    CancelTransaction = 0x4001
    ObjectAdded = 0x4002
    ObjectRemoved = 0x4003
    StoreAdded = 0x4004
    StoreRemoved = 0x4005
    DevicePropChanged = 0x4006
    ObjectInfoChanged = 0x4007
    DeviceInfoChanged = 0x4008
    RequestObjectTransfer = 0x4009
    StoreFull = 0x400A
    DeviceReset = 0x400B
    StorageInfoChanged = 0x400C
    CaptureComplete = 0x400D
    UnreportedStatus = 0x400E


class ObjectFormat(enum.IntEnum):
    Undefined = 0x3000
    Association = 0x3001
    Script = 0x3002
    Executable = 0x3003
    Text = 0x3004
    HTML = 0x3005
    DPOF = 0x3006
    AIFF = 0x3007
    WAV = 0x3008
    MP3 = 0x3009
    AVI = 0x300A
    MPEG = 0x300B
    ASF = 0x300C
    UndefinedImage = 0x3800
    EXIF_JPEG = 0x3801
    TIFF_EP = 0x3802
    FlashPix = 0x3803
    BMP = 0x3804
    CIFF = 0x3805
    GIF = 0x3807
    JFIF = 0x3808
    PCD = 0x3809
    PICT = 0x380A
    PNG = 0x380B
    TIFF = 0x380D
    TIFF_IT = 0x380E
    JP2 = 0x380F
    JPX = 0x3810
    DNG = 0x3811


class DataType(enum.IntEnum):
    UNDEF = 0x0000
    INT8 = 0x0001
    UINT8 = 0x0002
    INT16 = 0x0003
    UINT16 = 0x0004
    INT32 = 0x0005
    UINT32 = 0x0006
    INT64 = 0x0007
    UINT64 = 0x0008
    INT128 = 0x0009
    UINT128 = 0x000A
    AINT8 = 0x4001
    AUINT8 = 0x4002
    AINT16 = 0x4003
    AUINT16 = 0x4004
    AINT32 = 0x4005
    AUINT32 = 0x4006
    AINT64 = 0x4007
    AUINT64 = 0x4008
    AINT128 = 0x4009
    AUINT128 = 0x400A
    STR = 0xFFFF


class DevicePropCode(enum.IntEnum):
    BatteryLevel = 0x5001
    FunctionalMode = 0x5002
    ImageSize = 0x5003
    CompressionSetting = 0x5004
    WhiteBalance = 0x5005
    RGBGain = 0x5006
    FNumber = 0x5007
    FocalLength = 0x5008
    FocusDistance = 0x5009
    FocusMode = 0x500A
    ExposureMeteringMode = 0x500B
    FlashMode = 0x500C
    ExposureTime = 0x500D
    ExposureProgramMode = 0x500E
    ExposureIndex = 0x500F
    ExposureBiasCompensation = 0x5010
    DateTime = 0x5011
    CaptureDelay = 0x5012
    StillCaptureMode = 0x5013
    Contrast = 0x5014
    Sharpness = 0x5015
    DigitalZoom = 0x5016
    EffectMode = 0x5017
    BurstNumber = 0x5018
    BurstInterval = 0x5019
    TimelapseNumber = 0x501A
    TimelapseInterval = 0x501B
    FocusMeteringMode = 0x501C
    UploadURL = 0x501D
    Artist = 0x501E
    CopyrightInfo = 0x501F
    # PTP 1.1 streams
    SupportedStreams = 0x5020
    EnabledStreams = 0x5021


#: SupportedStreams / EnabledStreams bits (PTP 1.1).
STREAM_VIDEO = 0x1
STREAM_AUDIO = 0x2


class AssociationType(enum.IntEnum):
    Undefined = 0x0000
    GenericFolder = 0x0001


class StorageType(enum.IntEnum):
    Undefined = 0
    FixedROM = 1
    RemovableROM = 2
    FixedRAM = 3
    RemovableRAM = 4


class FilesystemType(enum.IntEnum):
    Undefined = 0
    GenericFlat = 1
    GenericHierarchical = 2
    DCF = 3


class AccessCapability(enum.IntEnum):
    ReadWrite = 0
    ReadOnlyWithoutDeletion = 1
    ReadOnlyWithDeletion = 2


class ProtectionStatus(enum.IntEnum):
    NoProtection = 0
    ReadOnly = 1


def code_name(code: int) -> str:
    """A readable name for any PTP code (operation, response, event, format, property)."""
    for enum_type in (OperationCode, ResponseCode, EventCode, ObjectFormat, DevicePropCode):
        try:
            return enum_type(code).name
        except ValueError:
            continue
    return f"0x{code:04X}"
