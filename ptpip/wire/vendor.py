"""Vendor extension codes of the camera makers whose PTP dialects gphoto2 speaks.

The values are those of the cameras themselves, as libgphoto2 (``camlibs/ptp2/ptp.h``)
and Wireshark know them. Vendor codes of different makers overlap (0x9xxx, 0xDxxx), so
each maker has its own enums; :func:`vendor_code_name` names a code for one of them.
"""

from __future__ import annotations

import enum

__all__ = [
    "CanonEOSEvent",
    "CanonEOSProp",
    "CanonOp",
    "NikonEvent",
    "NikonOp",
    "NikonProp",
    "VendorExtension",
    "vendor_code_name",
]


class VendorExtension(enum.IntEnum):
    """DeviceInfo VendorExtensionID values (PIMA 15740 Annex, as assigned)."""

    Generic = 0
    EastmanKodak = 0x00000001
    Microsoft = 0x00000006
    Nikon = 0x0000000A
    Canon = 0x0000000B
    Fuji = 0x0000000E


class CanonOp(enum.IntEnum):
    """Canon EOS operations (0x91xx)."""

    GetStorageIDs = 0x9101
    GetStorageInfo = 0x9102
    GetObjectInfo = 0x9103
    GetObject = 0x9104
    DeleteObject = 0x9105
    FormatStore = 0x9106
    GetPartialObject = 0x9107
    GetDeviceInfoEx = 0x9108
    GetObjectInfoEx = 0x9109
    GetThumbEx = 0x910A
    SendPartialObject = 0x910B
    SetObjectAttributes = 0x910C
    GetObjectTime = 0x910D
    SetObjectTime = 0x910E
    RemoteRelease = 0x910F
    SetDevicePropValueEx = 0x9110
    GetRemoteMode = 0x9113
    SetRemoteMode = 0x9114
    SetEventMode = 0x9115
    GetEvent = 0x9116
    TransferComplete = 0x9117
    CancelTransfer = 0x9118
    ResetTransfer = 0x9119
    PCHDDCapacity = 0x911A
    SetUILock = 0x911B
    ResetUILock = 0x911C
    KeepDeviceOn = 0x911D
    SetNullPacketMode = 0x911E
    UpdateFirmware = 0x911F
    TransferCompleteDT = 0x9120
    CancelTransferDT = 0x9121
    SetWftProfile = 0x9122
    GetWftProfile = 0x9123
    SetProfileToWft = 0x9124
    BulbStart = 0x9125
    BulbEnd = 0x9126
    RequestDevicePropValue = 0x9127
    RemoteReleaseOn = 0x9128
    RemoteReleaseOff = 0x9129
    InitiateViewfinder = 0x9151
    TerminateViewfinder = 0x9152
    GetViewFinderData = 0x9153
    DoAf = 0x9154
    DriveLens = 0x9155
    DepthOfFieldPreview = 0x9156
    ClickWB = 0x9157
    Zoom = 0x9158
    ZoomPosition = 0x9159
    SetLiveAfFrame = 0x915A
    AfCancel = 0x9160


class CanonEOSEvent(enum.IntEnum):
    """Record types inside the data of Canon EOS GetEvent (0x9116)."""

    RequestGetEvent = 0xC101
    ObjectAddedEx = 0xC181
    ObjectRemoved = 0xC182
    RequestGetObjectInfoEx = 0xC183
    StorageStatusChanged = 0xC184
    StorageInfoChanged = 0xC185
    RequestObjectTransfer = 0xC186
    ObjectInfoChangedEx = 0xC187
    ObjectContentChanged = 0xC188
    PropValueChanged = 0xC189
    AvailListChanged = 0xC18A
    CameraStatusChanged = 0xC18B
    WillSoonShutdown = 0xC18D
    ShutdownTimerUpdated = 0xC18E
    RequestCancelTransfer = 0xC18F
    RequestObjectTransferDT = 0xC190
    RequestCancelTransferDT = 0xC191
    StoreAdded = 0xC192
    StoreRemoved = 0xC193
    BulbExposureTime = 0xC194
    RecordingTime = 0xC195
    RequestObjectTransferTS = 0xC1A2
    AfResult = 0xC1A3
    PowerZoomInfoChanged = 0xC19D
    CTGInfoCheckComplete = 0xC1A4
    OLCInfoChanged = 0xC1A5
    ObjectAddedEx64 = 0xC1A7
    ObjectInfoChangedEx64 = 0xC1A8
    RequestObjectTransfer64 = 0xC1A9


class CanonEOSProp(enum.IntEnum):
    """Canon EOS device properties (reported by GetEvent, set by SetDevicePropValueEx)."""

    Aperture = 0xD101
    ShutterSpeed = 0xD102
    ISOSpeed = 0xD103
    ExpCompensation = 0xD104
    AutoExposureMode = 0xD105
    DriveMode = 0xD106
    MeteringMode = 0xD107
    FocusMode = 0xD108
    WhiteBalance = 0xD109
    ColorTemperature = 0xD10A
    PictureStyle = 0xD110
    AvailableShots = 0xD11B
    CaptureDestination = 0xD11C
    BracketMode = 0xD11D
    CurrentStorage = 0xD11E
    CurrentFolder = 0xD11F
    ImageFormat = 0xD120
    ImageFormatCF = 0xD121
    ColorSpace = 0xD10F
    BatteryPower = 0xD111
    BatterySelect = 0xD112
    ModelID = 0xD116
    Owner = 0xD115
    Artist = 0xD1D0
    Copyright = 0xD1D1
    QuickReviewTime = 0xD1A9
    DepthOfFieldPreview = 0xD1B2
    EVFMode = 0xD1B1
    EVFOutputDevice = 0xD1B0
    EVFWBMode = 0xD1B4
    EVFRecordStatus = 0xD1B8
    FixedMovie = 0xD1C2
    AutoPowerOff = 0xD114


class NikonOp(enum.IntEnum):
    """Nikon operations (0x90xx, 0x92xx, 0x94xx)."""

    GetProfileAllData = 0x9006
    SendProfileData = 0x9007
    DeleteProfile = 0x9008
    SetProfileData = 0x9009
    AdvancedTransfer = 0x9010
    GetFileInfoInBlock = 0x9011
    InitiateCaptureRecInSdram = 0x90C0
    AfDrive = 0x90C1
    ChangeCameraMode = 0x90C2
    DelImageSDRAM = 0x90C3
    GetLargeThumb = 0x90C4
    CurveDownload = 0x90C5
    CurveUpload = 0x90C6
    GetEvent = 0x90C7
    DeviceReady = 0x90C8
    SetPreWBData = 0x90C9
    GetVendorPropCodes = 0x90CA
    AfCaptureSDRAM = 0x90CB
    GetPictCtrlData = 0x90CC
    SetPictCtrlData = 0x90CD
    DelCstPicCtrl = 0x90CE
    GetPicCtrlCapability = 0x90CF
    GetPreviewImg = 0x9200
    StartLiveView = 0x9201
    EndLiveView = 0x9202
    GetLiveViewImg = 0x9203
    MfDrive = 0x9204
    ChangeAfArea = 0x9205
    AfDriveCancel = 0x9206
    InitiateCaptureRecInMedia = 0x9207
    GetVendorStorageIDs = 0x9209
    StartMovieRecInCard = 0x920A
    EndMovieRec = 0x920B
    TerminateCapture = 0x920C
    GetDevicePTPIPInfo = 0x90E0
    GetPartialObjectHiSpeed = 0x9400
    GetEventEx = 0x941C


class NikonEvent(enum.IntEnum):
    """Nikon events (reported by GetEvent, 0x90C7)."""

    ObjectAddedInSDRAM = 0xC101
    CaptureCompleteRecInSdram = 0xC102
    AdvancedTransfer = 0xC103
    PreviewImageAdded = 0xC104
    MovieRecordInterrupted = 0xC105
    MovieRecordComplete = 0xC108
    MovieRecordStarted = 0xC10A
    LiveViewStateChanged = 0xC10C


class NikonProp(enum.IntEnum):
    """Nikon vendor properties (0xD0xx, 0xD1xx), listed by GetVendorPropCodes."""

    ShootingBank = 0xD010
    WhiteBalanceAutoBias = 0xD017
    AutofocusMode = 0xD161
    ImageCommentString = 0xD090
    ImageCommentEnable = 0xD091
    ExposureDelayMode = 0xD06A
    LongExposureNoiseReduction = 0xD06B
    ExposureTime = 0xD100
    ACPower = 0xD101
    WarningStatus = 0xD102
    MaximumShots = 0xD103
    AFLockStatus = 0xD104
    AELockStatus = 0xD105
    FVLockStatus = 0xD106
    ExposureDisplayStatus = 0xD1B0
    ExposureIndicateStatus = 0xD1B1
    CameraOrientation = 0xD10E
    ExternalFlashAttached = 0xD120
    RecordingMedia = 0xD10B
    LiveViewStatus = 0xD1A2
    ApplicationMode = 0xD1F0
    ActivePicCtrlItem = 0xD200


def vendor_code_name(code: int, vendor: int) -> str:
    """A readable name for *code* as the maker *vendor* (a VendorExtensionID) means it."""
    kinds: dict[int, tuple[type[enum.IntEnum], ...]] = {
        VendorExtension.Canon: (CanonOp, CanonEOSEvent, CanonEOSProp),
        VendorExtension.Nikon: (NikonOp, NikonEvent, NikonProp),
    }
    for enum_type in kinds.get(vendor, ()):
        try:
            return f"{enum_type.__name__}.{enum_type(code).name}"
        except ValueError:
            continue
    return f"0x{code:04X}"
