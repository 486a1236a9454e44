// STUB
import NIOCore
import NIOPosix
import Capture
import Policy
import Audit
