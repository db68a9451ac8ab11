from twisted.application.service import ServiceMaker

cccpServer = ServiceMaker(
    "CCCP server", "cccp.tap", "A CamCoder Control Protocol server (draft-ohta-ccc-video-00).", "cccp-server")
