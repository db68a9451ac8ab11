from twisted.application.service import ServiceMaker

ptpipResponder = ServiceMaker(
    "PTP-IP responder", "ptpip.tap", "A virtual PTP-IP camera (ISO 15740 over TCP/IP).", "ptpip-responder")
